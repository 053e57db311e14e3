"""NVML on real hardware: what melt's NVML probe reports, and how melt's trapezoidal integral of
power.total_w (the sampler at 10 Hz) compares with NVML's own energy counter, idle and under load.

Runs with the machine's plain python3 from the repo root (melt's probe, sampler and trace/energy
code are standard library only; pynvml must be importable). Steps, each one guarded so that a
failure is recorded in the JSON and the other figures survive:

  detect     NvmlProbe("/").detect(): channels, GPUs; GPU facts straight from pynvml
  cost       microseconds per probe.sample(), and per NVML call it makes
  sampler    `python -m melt.agent sample` (through melt.agent.telemetry.SamplerProcess) at 100 ms,
             writing trace.csv / sensors.json; a thread calling probe.sample() if that fails
  windows    idle (--idle-s), load (--load-s; torch, else cupy, else nvcc, else none) and the
             --tail-s after it: NVML's counter read directly at each window's edges (mJ), against
             melt.analysis.energy.integrate over trace power.total_w; ratio = integral / counter
  env        `python -m melt.agent env` runs (rc, power method)

Output: $OUT/nvml_check.json (else ./nvml_check.json) plus trace.csv and sensors.json beside it.
Exit 0 when NVML was measured, 1 when there is no NVML here.

Usage: python3 benchmarks/nvml_check.py [--idle-s 15] [--load-s 30] [--tail-s 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.chdir(REPO)  # the sampler is started as `python -m melt.agent`, which needs the repo on sys.path

REASONS = {
    0x1: "gpu_idle", 0x2: "applications_clocks_setting", 0x4: "sw_power_cap", 0x8: "hw_slowdown",
    0x10: "sync_boost", 0x20: "sw_thermal_slowdown", 0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown", 0x100: "display_clock_setting",
}  # fmt: skip

RESULT: dict = {"errors": {}, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


class Step:
    """`with Step("name"):` records an exception under errors[name] and carries on."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is not None and kind is not KeyboardInterrupt:
            RESULT["errors"][self.name] = f"{kind.__name__}: {exc}"
            RESULT.setdefault("tracebacks", {})[self.name] = traceback.format_exc()[-2000:]
            print(f"[{self.name}] failed: {kind.__name__}: {exc}", flush=True)
            return True
        return False


def stats(values: list[float]) -> dict | None:
    if not values:
        return None
    s = sorted(values)
    return {
        "n": len(s), "min": s[0], "median": statistics.median(s), "mean": statistics.fmean(s),
        "p90": s[min(len(s) - 1, int(0.9 * len(s)))], "max": s[-1],
    }  # fmt: skip


def decode(mask: int) -> list[str]:
    names = [name for bit, name in REASONS.items() if mask & bit]
    return names + ([f"other:{mask & ~0x1FF:#x}"] if mask & ~0x1FF else [])


def text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# --- loads: each prints READY once warm, runs for argv[1] s, prints DONE ---------------------

TORCH_LOAD = r"""
import sys, time, torch
dur = float(sys.argv[1])
assert torch.cuda.is_available(), "torch sees no CUDA device"
n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
for _ in range(5):
    c = a @ b
torch.cuda.synchronize()
print("READY torch", torch.__version__, torch.cuda.get_device_name(0), flush=True)
t0 = time.monotonic(); k = 0
while time.monotonic() - t0 < dur:
    for _ in range(10):
        c = a @ b
    torch.cuda.synchronize(); k += 10
el = time.monotonic() - t0
print("DONE", k, "matmuls", round(2 * n**3 * k / el / 1e12, 1), "TFLOP/s bf16", flush=True)
"""

CUPY_LOAD = r"""
import sys, time, cupy as cp
dur = float(sys.argv[1])
n = 8192
a = cp.random.rand(n, n, dtype=cp.float32); b = cp.random.rand(n, n, dtype=cp.float32)
for _ in range(3):
    c = a @ b
cp.cuda.Device().synchronize()
print("READY cupy", cp.__version__, flush=True)
t0 = time.monotonic(); k = 0
while time.monotonic() - t0 < dur:
    for _ in range(5):
        c = a @ b
    cp.cuda.Device().synchronize(); k += 5
el = time.monotonic() - t0
print("DONE", k, "matmuls", round(2 * n**3 * k / el / 1e12, 1), "TFLOP/s fp32", flush=True)
"""

CUDA_LOAD = r"""
#include <chrono>
#include <cstdio>
#include <cstdlib>
__global__ void burn(float *x, int iters) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  float a = x[i] + 1.0f, b = 0.999f;
  for (int k = 0; k < iters; k++) { a = a * b + 0.001f; b = b * 0.9999f + 0.0001f; }
  x[i] = a + b;
}
int main(int argc, char **argv) {
  double dur = atof(argv[1]); int n = 1 << 24; float *x;
  if (cudaMalloc(&x, n * sizeof(float)) != cudaSuccess) { printf("cudaMalloc failed\n"); return 1; }
  cudaMemset(x, 0, n * sizeof(float));
  burn<<<n / 256, 256>>>(x, 100); cudaDeviceSynchronize();
  printf("READY nvcc\n"); fflush(stdout);
  auto t0 = std::chrono::steady_clock::now(); long k = 0;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < dur) {
    burn<<<n / 256, 256>>>(x, 4096); cudaDeviceSynchronize(); k++;
  }
  printf("DONE %ld launches\n", k); return cudaGetLastError() != cudaSuccess;
}
"""


class Load:
    """A GPU load in its own process: the first tool that reaches READY."""

    def __init__(self, work: Path, dur_s: float, ready_timeout_s: float):
        self.proc = None
        self.tool = None
        self.attempts: dict[str, str] = {}
        self.lines: list[str] = []
        for tool, cmd in self._candidates(work, dur_s):
            if cmd is None:
                continue
            try:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            except OSError as e:
                self.attempts[tool] = f"{type(e).__name__}: {e}"
                continue
            ready = self._wait_ready(proc, ready_timeout_s)
            if ready:
                self.proc, self.tool = proc, tool
                self.attempts[tool] = ready
                self.reader = threading.Thread(target=self._drain, daemon=True)
                self.reader.start()
                return
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            self.attempts[tool] = "no READY: " + " | ".join(self.lines[-6:])[-800:]
            self.lines = []

    def _candidates(self, work: Path, dur_s: float):
        py = sys.executable
        (work / "load_torch.py").write_text(TORCH_LOAD)
        yield "torch", [py, str(work / "load_torch.py"), str(dur_s)]
        (work / "load_cupy.py").write_text(CUPY_LOAD)
        yield "cupy", [py, str(work / "load_cupy.py"), str(dur_s)]
        nvcc = shutil.which("nvcc") or (
            "/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None
        )
        if not nvcc:
            self.attempts["nvcc"] = "nvcc not found"
            yield "nvcc", None
            return
        src, exe = work / "burn.cu", work / "burn"
        src.write_text(CUDA_LOAD)
        try:
            built = subprocess.run([nvcc, "-O2", "-o", str(exe), str(src)], capture_output=True, text=True, timeout=90)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.attempts["nvcc"] = f"build: {type(e).__name__}: {e}"
            yield "nvcc", None
            return
        if built.returncode != 0:
            self.attempts["nvcc"] = f"build rc {built.returncode}: {(built.stderr or built.stdout)[-600:]}"
            yield "nvcc", None
            return
        yield "nvcc", [str(exe), str(dur_s)]

    def _wait_ready(self, proc, timeout_s: float) -> str | None:
        found: list[str] = []

        def read():
            for line in proc.stdout:
                line = line.rstrip()
                self.lines.append(line)
                if line.startswith("READY"):
                    found.append(line)
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout_s)
        return found[0] if found else None

    def _drain(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def finish(self, timeout_s: float) -> dict:
        try:
            rc = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.reader.join(2)
        return {"rc": rc, "output": self.lines[-5:]}


# --- NVML helpers -------------------------------------------------------------------------------


def field_values(nv, handle, ids: dict[str, int]) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    got = nv.nvmlDeviceGetFieldValues(handle, list(ids.values()))
    for name, fv in zip(ids, got):
        if fv.nvmlReturn != 0:
            out[name] = f"nvmlReturn {fv.nvmlReturn}"
            continue
        kind = fv.valueType
        v = fv.value
        out[name] = {0: v.dVal, 1: v.uiVal, 2: v.ulVal, 3: v.ullVal, 4: v.sllVal}.get(kind, getattr(v, "siVal", None))
    return out


class Nv:
    """Direct pynvml reads for GPU 0, beside (not through) melt's probe."""

    def __init__(self):
        import pynvml as nv

        nv.nvmlInit()
        self.nv = nv
        self.h = nv.nvmlDeviceGetHandleByIndex(0)
        self.reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        self.fields = {
            k: getattr(nv, f"NVML_FI_DEV_{k.upper()}", d) for k, d in (("power_instant", 186), ("power_average", 185))
        }

    def counter(self) -> tuple[float, float]:
        """(monotonic time at mid-read, NVML total energy in mJ)."""
        a = time.monotonic()
        mj = self.nv.nvmlDeviceGetTotalEnergyConsumption(self.h)
        b = time.monotonic()
        return (a + b) / 2, float(mj)

    def snapshot(self) -> dict:
        nv, h, snap = self.nv, self.h, {"t": time.monotonic()}
        for key, fn in (
            ("power_usage_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1e3),
            ("reasons_mask", lambda: int(self.reasons_fn(h))),
            ("fields_mw", lambda: field_values(nv, h, self.fields)),
            ("pstate", lambda: int(nv.nvmlDeviceGetPerformanceState(h))),
        ):
            try:
                snap[key] = fn()
            except Exception as e:
                snap[key + "_error"] = f"{type(e).__name__}: {e}"
        if "reasons_mask" in snap:
            snap["reasons"] = decode(snap["reasons_mask"])
        return snap

    def update_rate(self, seconds: float, every_s: float = 0.002) -> dict:
        """How often NVML's power reading and energy counter change, polled every few ms."""
        nv, h = self.nv, self.h
        pw, en, t_end = [], [], time.monotonic() + seconds
        while time.monotonic() < t_end:
            t = time.monotonic()
            pw.append((t, nv.nvmlDeviceGetPowerUsage(h)))
            en.append((t, nv.nvmlDeviceGetTotalEnergyConsumption(h)))
            time.sleep(every_s)

        def changes(series):
            ts = [b[0] for a, b in zip(series, series[1:]) if b[1] != a[1]]
            gaps = [(b - a) * 1e3 for a, b in zip(ts, ts[1:])]
            median = statistics.median(gaps) if gaps else None
            return {"reads": len(series), "changes": len(ts), "median_ms_between_changes": median}

        return {"poll_ms": every_s * 1e3, "seconds": seconds, "power_usage": changes(pw), "energy_counter": changes(en)}


def monitor(nv: Nv, seconds: float, every_s: float = 1.0) -> list[dict]:
    snaps, end = [], time.monotonic() + seconds
    while True:
        snaps.append(nv.snapshot())
        left = end - time.monotonic()
        if left <= 0:
            return snaps
        time.sleep(min(every_s, left))


# --- main -----------------------------------------------------------------------------------------


class ThreadSampler:
    """Fallback if the sampler process cannot start: probe.sample() at the same interval, in-process."""

    def __init__(self, probe, interval_s: float):
        self.probe, self.interval, self.rows, self.stop_flag = probe, interval_s, [], False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        start, k = time.monotonic(), 0
        while not self.stop_flag:
            time.sleep(max(0.0, start + k * self.interval - time.monotonic()))
            t = time.monotonic()
            try:
                self.rows.append((t, self.probe.sample()))
            except Exception:
                pass
            k += 1

    def stop(self):
        self.stop_flag = True
        self.thread.join(2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--idle-s", type=float, default=15.0)
    ap.add_argument("--load-s", type=float, default=30.0)
    ap.add_argument("--tail-s", type=float, default=10.0)
    ap.add_argument("--interval-ms", type=int, default=100)
    ap.add_argument("--ready-timeout-s", type=float, default=60.0)
    args = ap.parse_args()
    out_dir = Path(os.environ.get("OUT") or ".")
    out_dir.mkdir(parents=True, exist_ok=True)
    RESULT["args"] = vars(args)
    RESULT["python"] = sys.version.split()[0] + " " + sys.executable
    t_script = time.monotonic()
    try:
        return run(args, out_dir)
    finally:
        RESULT["script_s"] = round(time.monotonic() - t_script, 1)
        (out_dir / "nvml_check.json").write_text(json.dumps(RESULT, indent=2, default=str))
        print(f"wrote {out_dir / 'nvml_check.json'}", flush=True)


def run(args, out_dir: Path) -> int:
    from melt.telemetry.nvml import NvmlProbe

    probe = None
    with Step("detect"):
        probe = NvmlProbe("/")
        det = probe.detect()
        RESULT["detection"] = det.to_json()
    if probe is None or not getattr(probe, "handles", None):
        why = "; ".join(RESULT.get("detection", {}).get("missing", [])) or RESULT["errors"].get("detect", "")
        print(f"no NVML: {why}", flush=True)
        RESULT["verdict"] = f"no NVML: {why}"
        return 1
    nv = None
    with Step("gpu_facts"):
        nv = Nv()
        facts: dict = {}
        n, h = nv.nv, nv.h
        for key, fn in (
            ("name", lambda: text(n.nvmlDeviceGetName(h))),
            ("driver", lambda: text(n.nvmlSystemGetDriverVersion())),
            ("nvml_version", lambda: text(n.nvmlSystemGetNVMLVersion())),
            ("cuda_driver_version", lambda: n.nvmlSystemGetCudaDriverVersion()),
            ("gpu_count", lambda: n.nvmlDeviceGetCount()),
            ("power_limit_w", lambda: n.nvmlDeviceGetPowerManagementLimit(h) / 1e3),
            ("enforced_power_limit_w", lambda: n.nvmlDeviceGetEnforcedPowerLimit(h) / 1e3),
            ("max_sm_mhz", lambda: n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_SM)),
            ("max_mem_mhz", lambda: n.nvmlDeviceGetMaxClockInfo(h, n.NVML_CLOCK_MEM)),
            ("persistence_mode", lambda: n.nvmlDeviceGetPersistenceMode(h)),
            ("energy_counter_mj_now", lambda: n.nvmlDeviceGetTotalEnergyConsumption(h)),
            ("reasons_function", lambda: nv.reasons_fn.__name__ if nv.reasons_fn else None),
            ("probe_has_event_reasons_fn", lambda: hasattr(n, "nvmlDeviceGetCurrentClocksEventReasons")),
        ):
            try:
                facts[key] = fn()
            except Exception as e:
                facts[key] = f"error {type(e).__name__}: {e}"
        try:
            from importlib.metadata import version

            facts["nvidia_ml_py"] = version("nvidia-ml-py")
        except Exception as e:
            facts["nvidia_ml_py"] = f"error {type(e).__name__}: {e}"
        RESULT["gpu"] = facts
    with Step("first_sample"):
        RESULT["first_sample"] = probe.sample()
        missing = [c for c in RESULT["detection"]["channels"] if c not in RESULT["first_sample"]]
        RESULT["channels_without_value"] = missing
    with Step("sample_cost"):
        for _ in range(5):
            probe.sample()
        us = []
        for _ in range(200):
            a = time.perf_counter_ns()
            probe.sample()
            us.append((time.perf_counter_ns() - a) / 1e3)
        RESULT["sample_cost_us"] = stats(us)
    if nv is not None:
        with Step("call_cost"):
            n, h, per = nv.nv, nv.h, {}
            for key, fn in (
                ("GetPowerUsage", lambda: n.nvmlDeviceGetPowerUsage(h)),
                ("GetTotalEnergyConsumption", lambda: n.nvmlDeviceGetTotalEnergyConsumption(h)),
                ("GetTemperature", lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
                ("GetClockInfo_SM", lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)),
                ("GetClockInfo_MEM", lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM)),
                ("GetUtilizationRates", lambda: n.nvmlDeviceGetUtilizationRates(h)),
                ("ClocksEventReasons", lambda: nv.reasons_fn(h)),
            ):
                try:
                    us = []
                    for _ in range(50):
                        a = time.perf_counter_ns()
                        fn()
                        us.append((time.perf_counter_ns() - a) / 1e3)
                    per[key] = round(statistics.median(us), 1)
                except Exception as e:
                    per[key] = f"error {type(e).__name__}: {e}"
            RESULT["call_cost_median_us"] = per

    work = Path(tempfile.mkdtemp(prefix="nvml_check_"))
    case_dir = work / "case"
    case_dir.mkdir()
    sampler = thread_sampler = None
    with Step("sampler_start"):
        from melt.agent.telemetry import SamplerProcess

        t = time.monotonic()
        sampler = SamplerProcess(str(case_dir), args.interval_ms, "/", {}, os.getpid())
        entry = "python -m melt.agent sample (SamplerProcess)"
        RESULT["sampler"] = {"entry": entry, "start_s": round(time.monotonic() - t, 3)}
    if sampler is None:
        RESULT["sampler"] = {"entry": "in-process thread fallback (sampler process failed)"}
        thread_sampler = ThreadSampler(probe, args.interval_ms / 1000)
    time.sleep(1.0)  # samples before the first window's edge

    windows: dict[str, dict] = {}
    snaps: dict[str, list] = {}

    def edge() -> tuple[float, float] | None:
        try:
            return nv.counter()
        except Exception as e:
            RESULT["errors"].setdefault("counter", f"{type(e).__name__}: {e}")
            return None

    with Step("idle_window"):
        c0 = edge()
        snaps["idle"] = monitor(nv, args.idle_s)
        c1 = edge()
        windows["idle"] = {"edges": [c0, c1]}
    with Step("idle_update_rate"):
        RESULT["update_rate_idle"] = nv.update_rate(1.5)

    load = None
    with Step("load_start"):
        t = time.monotonic()
        load = Load(work, args.load_s + 3.0, args.ready_timeout_s)
        started = round(time.monotonic() - t, 1)
        RESULT["load"] = {"tool": load.tool or "no load tool", "attempts": load.attempts, "start_s": started}
    if load is not None and load.proc is not None:
        with Step("load_window"):
            time.sleep(1.0)  # past the ramp-up
            c0 = edge()
            with Step("load_update_rate"):
                RESULT["update_rate_load"] = nv.update_rate(1.5)
            snaps["load"] = monitor(nv, max(0.0, args.load_s - (time.monotonic() - c0[0] if c0 else 1.5)))
            c1 = edge()
            windows["load"] = {"edges": [c0, c1]}
        with Step("tail_window"):
            c0 = windows.get("load", {}).get("edges", [None, None])[1] or edge()
            t_end = time.monotonic() + args.tail_s
            RESULT["load"]["finish"] = load.finish(args.tail_s + 30)
            snaps["tail"] = monitor(nv, max(0.0, t_end - time.monotonic()))
            c1 = edge()
            windows["after_load_end"] = {"edges": [c0, c1], "note": "the load's last ~2 s, its exit and the ramp-down"}
    time.sleep(0.5)  # samples after the last edge
    with Step("sampler_stop"):
        if sampler is not None:
            RESULT["sampler"]["exit"] = sampler.stop()
        if thread_sampler is not None:
            thread_sampler.stop()
    with Step("env"):
        t = time.monotonic()
        p = subprocess.run([sys.executable, "-m", "melt.agent", "env"], capture_output=True, text=True, timeout=60)
        env = {"rc": p.returncode, "s": round(time.monotonic() - t, 1), "stderr": p.stderr[-500:]}
        try:
            sensors = json.loads(p.stdout)["sensors"]
            env["power_total"] = sensors.get("power_total")
            env["power_method"] = sensors.get("power_method")
            env["n_channels"] = len(sensors.get("channels", []))
        except Exception as e:
            env["parse_error"] = f"{type(e).__name__}: {e}"
        RESULT["agent_env"] = env
    if probe is not None:
        probe.close()

    # --- analysis with melt's own trace reader and integrator ---------------------------------
    from melt.analysis.energy import PhaseEnergy, counter_delta, integrate

    power = counter_series = None
    cols: dict[str, list[tuple[float, float]]] = {}
    with Step("trace"):
        if sampler is not None:
            from melt.analysis.trace import read_trace

            trace = read_trace(case_dir)
            power = trace.series("power.total_w")
            counter_series = trace.series("energy.total_j")
            cols = {c: trace.series(c) for c in trace.columns}
            lag = [v for v in trace.columns.get("sampler.lag_ms", []) if v is not None]
            missed = [v for v in trace.columns.get("sampler.missed", []) if v is not None]
            RESULT["sampler"].update(
                rows=len(trace.t_s), power_method=trace.power_method, power_total=trace.sensors.get("power_total"),
                channels=trace.sensors.get("channels"), lag_ms=stats(lag), missed_total=sum(missed),
                nvml_detection_in_sampler=trace.sensors.get("probes", {}).get("nvml"),
            )  # fmt: skip
            for name in ("trace.csv", "sensors.json"):
                shutil.copy(case_dir / name, out_dir / name)
        else:
            rows = thread_sampler.rows
            power = [(t, v["power.total_w"]) for t, v in rows if "power.total_w" in v]
            counter_series = [(t, v["energy.total_j"]) for t, v in rows if "energy.total_j" in v]
            keys = sorted({k for _, v in rows for k in v})
            cols = {k: [(t, v[k]) for t, v in rows if k in v] for k in keys}
            RESULT["sampler"]["rows"] = len(rows)
    for name, w in windows.items():
        with Step(f"analyse_{name}"):
            (t0, e0), (t1, e1) = w["edges"]
            counter_j = (e1 - e0) / 1e3
            integral_j, why = integrate(power, t0, t1)
            w.update(t0_s=t0, t1_s=t1, duration_s=t1 - t0, counter_direct_j=counter_j, integral_j=integral_j)
            if why:
                w["integral_reason"] = why
            w["ratio_integral_over_counter"] = integral_j / counter_j if integral_j and counter_j else None
            w["counter_mean_w"] = counter_j / (t1 - t0)
            w["integral_mean_w"] = integral_j / (t1 - t0) if integral_j is not None else None
            trace_counter, why_c = (
                counter_delta(counter_series, t0, t1) if counter_series else (None, "no energy.total_j")
            )
            w["counter_from_trace_j"] = trace_counter
            if trace_counter:
                w["ratio_integral_over_trace_counter"] = integral_j / trace_counter if integral_j else None
            elif why_c:
                w["counter_from_trace_reason"] = why_c
            inside = {c: [v for t, v in s if t0 <= t <= t1] for c, s in cols.items()}
            w["samples"] = len(inside.get("power.total_w", []))
            w["channels"] = {
                c: {"min": min(v), "median": statistics.median(v), "max": max(v)}
                for c, v in inside.items()
                if v and (c.startswith(("gpu", "temp.gpu", "throttle.gpu", "power.total")))
            }
            s = snaps.get(name if name != "after_load_end" else "tail", [])
            masks = sorted({x["reasons_mask"] for x in s if "reasons_mask" in x})
            w["reasons_seen"] = {f"{m:#x}": decode(m) for m in masks}
            w["nvml_fields_seen"] = [x.get("fields_mw") for x in s[:: max(1, len(s) // 5)]]
            w["pstates_seen"] = sorted({x["pstate"] for x in s if "pstate" in x})
            errs = {k: v for x in s for k, v in x.items() if k.endswith("_error")}
            if errs:
                w["snapshot_errors"] = errs
            w.pop("edges")
    RESULT["windows"] = windows
    with Step("phase_energy"):
        if sampler is not None and "idle" in windows and "load" in windows:
            pe = PhaseEnergy(trace, (windows["idle"]["t0_s"], windows["idle"]["t1_s"]))
            RESULT["phase_energy_load"] = pe.window(windows["load"]["t0_s"], windows["load"]["t1_s"])
    summary(RESULT)
    shutil.rmtree(work, ignore_errors=True)
    return 0


def summary(r: dict) -> None:
    g = r.get("gpu", {})
    print(f"GPU {g.get('name')}  driver {g.get('driver')}  nvidia-ml-py {g.get('nvidia_ml_py')}  "
          f"power limit {g.get('power_limit_w')} W", flush=True)  # fmt: skip
    print("channels:", ", ".join(r.get("detection", {}).get("channels", [])))
    c = r.get("sample_cost_us") or {}
    print(f"probe.sample(): median {c.get('median', 0):.0f} us, p90 {c.get('p90', 0):.0f} us")
    s = r.get("sampler", {})
    print(f"sampler: {s.get('entry')}  rows {s.get('rows')}  power_method {s.get('power_method')}  "
          f"missed {s.get('missed_total')}  load: {r.get('load', {}).get('tool')}")  # fmt: skip
    for name, w in r.get("windows", {}).items():
        ch = w.get("channels", {})

        def m(k, ch=ch):
            return ch.get(k, {}).get("median")

        ratio = w.get("ratio_integral_over_counter")
        print(f"{name:>15}: {w.get('duration_s', 0):5.1f} s  integral {w.get('integral_j') or 0:9.1f} J  "
              f"counter {w.get('counter_direct_j') or 0:9.1f} J  ratio {ratio if ratio is None else round(ratio, 4)}  "
              f"P {m('power.total_w')} W  T {m('temp.gpu0_c')} C  SM {m('gpu0.sm_freq_mhz')} MHz  "
              f"reasons {list(w.get('reasons_seen', {}).values())}")  # fmt: skip
    if r["errors"]:
        print("errors:", r["errors"])


if __name__ == "__main__":
    sys.exit(main())
