/* melt-membw: memory read and copy bandwidth for devices without Python (melt.devices.bandwidth).

   usage: melt-membw THREADS BYTES_PER_ARRAY REPS
   Two arrays of BYTES_PER_ARRAY (rounded down to whole 64-byte lines per thread), on transparent huge pages
   where the kernel gives them, filled before timing (every page touched, so no page fault is timed). Each repetition starts THREADS threads at a barrier
   on their own contiguous slice and times, on CLOCK_MONOTONIC, from the barrier to the last thread done:
     read: a sum of every 64-bit word of array a (four accumulators, so the adds do not bound it);
     copy: memcpy of a into b (STREAM's Copy kernel).
   Prints one JSON object: {"threads", "bytes_per_array", "read_s": [...], "copy_s": [...], "checksum"}.
   Rates and the best-of choice are computed by the caller (melt.agent.bandwidth.rates), the same way for
   this helper and for the agent's numpy measurement. Built from source by melt with the host's C compiler
   (cc -O3 -pthread: the sum loop vectorised), for a device of the host's architecture. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t *a, *b;
static size_t words_per_thread;
static int nthreads, kind; /* kind 0: read, 1: copy */
static pthread_barrier_t start, done;
static volatile uint64_t sink;

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *worker(void *arg) {
  size_t id = (size_t)arg, lo = id * words_per_thread, n = words_per_thread;
  for (;;) {
    pthread_barrier_wait(&start);
    if (kind < 0) return NULL;
    if (kind == 0) {
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      const uint64_t *p = a + lo;
      for (size_t i = 0; i + 4 <= n; i += 4) {
        s0 += p[i];
        s1 += p[i + 1];
        s2 += p[i + 2];
        s3 += p[i + 3];
      }
      sink += s0 + s1 + s2 + s3; /* a racy add is fine: it only keeps the loop from being removed */
    } else {
      memcpy(b + lo, a + lo, n * sizeof(uint64_t));
    }
    pthread_barrier_wait(&done);
  }
}

static double one(int k) {
  kind = k;
  double t0 = now_s();
  pthread_barrier_wait(&start);
  pthread_barrier_wait(&done);
  return now_s() - t0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s THREADS BYTES_PER_ARRAY REPS\n", argv[0]);
    return 2;
  }
  nthreads = atoi(argv[1]);
  size_t bytes = strtoull(argv[2], NULL, 10);
  int reps = atoi(argv[3]);
  if (nthreads < 1 || reps < 1 || bytes < (size_t)nthreads * 64) {
    fprintf(stderr, "bad arguments: THREADS >= 1, REPS >= 1, BYTES_PER_ARRAY >= 64 x THREADS\n");
    return 2;
  }
  words_per_thread = bytes / sizeof(uint64_t) / nthreads / 8 * 8;
  size_t words = words_per_thread * nthreads;
  /* 2 MiB aligned and, where the kernel offers it, on transparent huge pages, as numpy's large arrays are
     (it madvises them): 4 KiB pages cost TLB walks that would be measured as memory (heavily so in a VM) */
  size_t huge = 2u << 20, size = (words * 8 + huge - 1) / huge * huge;
  if (posix_memalign((void **)&a, huge, size) || posix_memalign((void **)&b, huge, size)) {
    fprintf(stderr, "cannot allocate 2 x %zu bytes\n", size);
    return 3;
  }
#ifdef MADV_HUGEPAGE
  madvise(a, size, MADV_HUGEPAGE);
  madvise(b, size, MADV_HUGEPAGE);
#endif
  for (size_t i = 0; i < words; i++) {
    a[i] = i;
    b[i] = 0;
  }
  pthread_barrier_init(&start, NULL, nthreads + 1);
  pthread_barrier_init(&done, NULL, nthreads + 1);
  pthread_t *ts = calloc(nthreads, sizeof(pthread_t));
  for (int t = 0; t < nthreads; t++) pthread_create(&ts[t], NULL, worker, (void *)(size_t)t);
  printf("{\"threads\": %d, \"bytes_per_array\": %zu, \"read_s\": [", nthreads, words * 8);
  for (int r = 0; r < reps; r++) printf("%s%.9f", r ? ", " : "", one(0));
  printf("], \"copy_s\": [");
  for (int r = 0; r < reps; r++) printf("%s%.9f", r ? ", " : "", one(1));
  kind = -1;
  pthread_barrier_wait(&start);
  for (int t = 0; t < nthreads; t++) pthread_join(ts[t], NULL);
  printf("], \"checksum\": %llu}\n", (unsigned long long)(sink + b[words - 1]));
  return 0;
}
