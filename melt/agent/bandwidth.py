"""Memory bandwidth of the device, measured on it: read and copy, with as many threads as the agent may use.

Runs on the device (stdlib; numpy, which llama-cpp-python and onnxruntime both depend on, for the
kernels: numpy releases the GIL inside them, so the threads run in parallel). Devices without Python run
melt/agent/membw.c, the same two kernels in C; both report raw per-repetition times and `rates` turns them
into figures the same way.

Conventions, after STREAM (McCalpin, https://www.cs.virginia.edu/stream/ref.html):
- each array is at least 4 x the sum of the last-level caches (STREAM's rule, so caches do not serve it),
  and at least MIN_ARRAY_BYTES; at most a quarter of MemAvailable for the two arrays together (a board must
  not swap): where that cap bites, the method says so;
- copy counts the bytes read plus the bytes written (2 x the array), as STREAM's Copy does; read counts
  the array once (a reduction over every 64-bit word);
- arrays on transparent huge pages where the kernel offers them (numpy madvises large arrays; membw.c
  does the same): with 4 KiB pages the TLB walks, costly in a VM, would be timed as memory;
- REPS repetitions; the first is dropped (STREAM drops its first iteration) and the figure is the best of
  the rest (STREAM reports the best rate): on a device anything else running only slows a repetition
  down, so the fastest one is closest to what the memory allows, which is what a roofline compares with.
  The median is kept beside it.
"""

from __future__ import annotations

import os
import statistics
import time

REPS = 10
MIN_ARRAY_BYTES = 64 * 2**20
MEM_FRACTION = 0.25  # of MemAvailable, for both arrays together
LLC_FACTOR = 4  # STREAM: each array >= 4 x the sum of the last-level caches


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _size_bytes(text: str | None) -> int | None:
    """sysfs cache sizes: '32K', '1024K', '2M'."""
    if not text:
        return None
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    try:
        return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except ValueError:
        return None


def llc_of(entries: list[tuple]) -> dict:
    """{"level", "bytes": the sum over distinct last-level caches, "instances"} from sysfs cache entries
    (level, type, size, shared_cpu_list) as read from cpu*/cache/index*/; {} where there are none."""
    found: dict[tuple, int] = {}  # (level, shared_cpu_list) -> size: each physical cache once
    for level, kind, size, shared in entries:
        size_b = _size_bytes(size)
        if kind == "Instruction" or not (level and level.isdigit() and size_b):
            continue
        found[(int(level), shared)] = size_b
    if not found:
        return {}
    top = max(level for level, _ in found)
    sizes = [size for (level, _), size in found.items() if level == top]
    return {"level": top, "bytes": sum(sizes), "instances": len(sizes)}


def last_level_caches(root: str = "/") -> dict:
    """llc_of the caches in sys/devices/system/cpu/cpu*/cache/index*/ under root."""
    base = os.path.join(root, "sys/devices/system/cpu")
    entries = []
    try:
        cpus = [d for d in os.listdir(base) if d.startswith("cpu") and d[3:].isdigit()]
    except OSError:
        return {}
    for cpu in cpus:
        cache = os.path.join(base, cpu, "cache")
        try:
            indexes = [d for d in os.listdir(cache) if d.startswith("index")]
        except OSError:
            continue
        for index in indexes:
            d = os.path.join(cache, index)
            fields = [_read(os.path.join(d, f)) for f in ("level", "type", "size", "shared_cpu_list")]
            entries.append((fields[0], fields[1], fields[2], fields[3] or cpu))
    return llc_of(entries)


def mem_available_bytes(root: str = "/") -> int | None:
    text = _read(os.path.join(root, "proc/meminfo")) or ""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def plan(llc: dict, available: int | None) -> dict:
    """The array size: {"bytes_per_array", "llc_bytes", "why"}: STREAM's 4 x LLC (at least MIN_ARRAY_BYTES),
    capped so both arrays fit in MEM_FRACTION of MemAvailable."""
    llc_bytes = llc.get("bytes")
    want = max(LLC_FACTOR * llc_bytes, MIN_ARRAY_BYTES) if llc_bytes else MIN_ARRAY_BYTES * 4
    why = (
        f"{LLC_FACTOR} x the last-level caches ({llc_bytes / 2**20:g} MiB, L{llc['level']} x {llc['instances']})"
        if llc_bytes
        else "no cache sizes in sysfs: 256 MiB"
    )
    if want == MIN_ARRAY_BYTES and llc_bytes:
        why = f"{MIN_ARRAY_BYTES // 2**20} MiB, over {LLC_FACTOR} x the last-level caches ({llc_bytes / 2**20:g} MiB)"
    if available and 2 * want > MEM_FRACTION * available:
        want = int(MEM_FRACTION * available / 2)
        why += f"; capped to {want / 2**20:.0f} MiB by MemAvailable {available / 2**30:.1f} GiB" + (
            " (under 4 x LLC: caches may serve part of it)" if llc_bytes and want < LLC_FACTOR * llc_bytes else ""
        )
    return {"bytes_per_array": want // 4096 * 4096, "llc_bytes": llc_bytes, "why": why}


def threads() -> int:
    """As many threads as the device has cores the agent may run on (sched_getaffinity where there is one)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def rates(read_s: list[float], copy_s: list[float], bytes_per_array: int) -> dict:
    """Figures from raw repetition times: {"mem_bw_read_gbs", "mem_bw_copy_gbs" (best of the repetitions after
    the first, in GB/s = 1e9 bytes/s), "read_median_gbs", "copy_median_gbs", "read_s", "copy_s"}. Copy counts
    2 x bytes_per_array (read + write, STREAM). Raises ValueError with fewer than 2 repetitions."""
    if len(read_s) < 2 or len(copy_s) < 2:
        raise ValueError("at least 2 repetitions: the first is dropped")
    kept_read, kept_copy = read_s[1:], copy_s[1:]
    return {
        "mem_bw_read_gbs": bytes_per_array / min(kept_read) / 1e9,
        "mem_bw_copy_gbs": 2 * bytes_per_array / min(kept_copy) / 1e9,
        "read_median_gbs": bytes_per_array / statistics.median(kept_read) / 1e9,
        "copy_median_gbs": 2 * bytes_per_array / statistics.median(kept_copy) / 1e9,
        "read_s": read_s,
        "copy_s": copy_s,
    }


NUMPY_READ = "numpy max over every 64-bit word of one array (a SIMD reduction): bytes = the array"
C_READ = "a sum of every 64-bit word of one array (four accumulators, vectorised): bytes = the array"


def method(tool: str, n_threads: int, sizing: dict, reps: int, read: str = NUMPY_READ) -> dict:
    """What was done, for the record beside the figures."""
    return {
        "tool": tool,
        "threads": n_threads,
        "bytes_per_array": sizing["bytes_per_array"],
        "llc_bytes": sizing["llc_bytes"],
        "array_size": sizing["why"],
        "repetitions": reps,
        "statistic": "best of the repetitions after the first (STREAM's convention; the median is kept beside it)",
        "read": read,
        "copy": "array a copied into array b: bytes = 2 x the array (read + write, as STREAM's Copy counts)",
        "pages": "transparent huge pages where the kernel gives them (madvise: numpy does it for large arrays, the "
        "C helper too): 4 KiB pages' TLB walks are not memory bandwidth",
    }


def measure_numpy(n_threads: int, bytes_per_array: int, reps: int = REPS) -> tuple[list[float], list[float]]:
    """(read_s, copy_s): each repetition's wall time from the start of n_threads workers on their own
    slices to the last done. Raises ImportError where numpy is not installed."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    words = bytes_per_array // 8 // n_threads * n_threads
    a = np.arange(words, dtype=np.uint64)  # every page written: no page fault is timed
    b = np.zeros_like(a)
    step = words // n_threads
    slices = [slice(i * step, (i + 1) * step) for i in range(n_threads)]

    def read(s: slice):
        return a[s].max()

    def copy(s: slice):
        np.copyto(b[s], a[s])

    out: dict = {"read": [], "copy": []}
    with ThreadPoolExecutor(n_threads) as pool:
        for name, kernel in (("read", read), ("copy", copy)):
            for _ in range(reps):
                t0 = time.perf_counter()
                list(pool.map(kernel, slices))
                out[name].append(time.perf_counter() - t0)
    return out["read"], out["copy"]


def probe(root: str = "/", reps: int = REPS) -> dict:
    """Measure here with numpy: {"mem_bw_read_gbs", "mem_bw_copy_gbs", ..., "method": {...}}; or
    {"error": why} where numpy cannot be imported (the host then tries the C helper)."""
    try:
        import numpy  # noqa: F401
    except ImportError as e:
        return {"error": f"numpy not importable here ({e}): no threaded kernel for the agent"}
    n = threads()
    sizing = plan(last_level_caches(root), mem_available_bytes(root))
    read_s, copy_s = measure_numpy(n, sizing["bytes_per_array"], reps)
    return {**rates(read_s, copy_s, sizing["bytes_per_array"]), "method": method("numpy (agent)", n, sizing, reps)}
