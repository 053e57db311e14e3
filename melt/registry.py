"""Every summary metric once: its name, unit, type, which way is better, how `melt compare` judges it, its
title and formats, and which runtimes produce it. summary.csv's columns, the catalog's types, the report's
table, the markdown export, the comparison's columns and the live view are all read from here, so a new
metric is one entry (plus its computation in melt.analysis).

Words (DESIGN.md, "Metric names"): the name carries the unit (`decode_tok_s`, `power_avg_w`); `judged`
says what a comparison does with it:
- "trial": one sample per counted trial (ONNX: per inference), tested trial by trial or run by run
  (melt.analysis.compare);
- "run": one value per run (peak RSS), judged only against earlier runs;
- "info": one value per run, shown with its change but never judged (it swings between identical runs:
  `benchmarks/compare_noise.py` measures by how much);
- "paired": a quality figure scored on the same units in both runs (`units`: tokens, items), judged by a paired
  test over them;
- None: not compared (a tail percentile, a flag, a count).

This module imports nothing from melt: everything else imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

AGENT_RUNTIMES = frozenset({"llama_cpp", "onnxruntime"})  # melt's agent runs these (load time, peak RSS)
LLAMA = frozenset({"llama_cpp"})
LLAMA_ANY = frozenset({"llama_cpp", "llama_cpp_cli"})
ORT = frozenset({"onnxruntime"})
EVERY = frozenset({"llama_cpp", "llama_cpp_cli", "onnxruntime"})


@dataclass(frozen=True)
class Metric:
    """One summary metric. unit: as shown ('' for none); kind: float | int | bool | text (summary.csv keeps
    text, the catalog types the column by it); direction: 'higher' | 'lower' is better, None where it has no
    better side; judged: 'trial' | 'run' | 'info' | None (module docstring); source: 'runtime' (a runtime's
    own analysis), 'agent' (what the agent reports of its process), 'telemetry' (the sampler's trace),
    'quality' (measured of the model's output after the speed trials: melt.analysis.quality), 'sustained' (the
    sustained protocol's windows and throttle onset: melt.analysis.sustained), 'roofline' (the device's memory
    bandwidth and the model's bytes and FLOPs per token: melt.analysis.roofline) or 'case' (the case's own
    bookkeeping: trials, spread, validity); runtimes: those whose analysis produces it
    (telemetry: every runtime, where the device has the sensor); title: short column title; digits: the
    markdown export's format; table: shown in the report's comparison table; live: the live view's format;
    compare_rank: the column order of a comparison (lower first)."""

    name: str
    unit: str
    title: str
    kind: str = "float"
    direction: str | None = None
    judged: str | None = None
    source: str = "runtime"
    runtimes: frozenset = EVERY
    digits: str | None = None
    table: bool = False
    live: str | None = None
    compare_rank: int = 100
    units: str | None = None  # judged "paired": what both runs scored, one by one

    @property
    def heading(self) -> str:
        """The title with its unit, as a column heading: 'decode tok/s'."""
        return f"{self.title} {self.unit}" if self.unit else self.title


# summary.csv's metric columns, in this order (the results contract: DESIGN.md "summary.csv")
METRICS: tuple[Metric, ...] = (
    Metric("load_s", "s", "load", direction="lower", judged="info", source="agent", runtimes=AGENT_RUNTIMES,
           digits="{:.3f}", table=True, live="load {:.2f} s", compare_rank=12),
    Metric("ttft_s", "s", "TTFT", direction="lower", judged="trial", runtimes=LLAMA, digits="{:.3f}", table=True,
           live="ttft {:.3f} s", compare_rank=3),
    Metric("prefill_tok_s", "tok/s", "prefill", direction="higher", judged="trial", runtimes=LLAMA_ANY,
           digits="{:.1f}", table=True, live="prefill {:.1f} tok/s", compare_rank=2),
    Metric("decode_tok_s", "tok/s", "decode", direction="higher", judged="trial", runtimes=LLAMA_ANY,
           digits="{:.2f}", table=True, live="decode {:.1f} tok/s", compare_rank=1),
    Metric("itl_p50_ms", "ms", "ITL p50", direction="lower", judged="trial", runtimes=LLAMA, table=True,
           compare_rank=5),
    Metric("itl_p90_ms", "ms", "ITL p90", direction="lower", runtimes=LLAMA, digits="{:.2f}"),
    Metric("itl_p99_ms", "ms", "ITL p99", direction="lower", runtimes=LLAMA, table=True),
    Metric("e2e_s", "s", "end-to-end", direction="lower", judged="trial", runtimes=LLAMA, compare_rank=4),
    Metric("latency_p50_ms", "ms", "latency p50", direction="lower", judged="trial", runtimes=ORT, digits="{:.3f}",
           table=True, live="p50 {:.3f} ms", compare_rank=6),
    Metric("latency_p90_ms", "ms", "latency p90", direction="lower", judged="info", runtimes=ORT, compare_rank=7),
    Metric("latency_p99_ms", "ms", "latency p99", direction="lower", runtimes=ORT, digits="{:.3f}", table=True),
    Metric("throughput_ips", "inf/s", "throughput", direction="higher", judged="info", runtimes=ORT,
           digits="{:.1f}", table=True, live="{:.1f} inf/s", compare_rank=8),
    Metric("peak_rss_mb", "MB", "peak RSS", direction="lower", judged="run", source="agent",
           runtimes=AGENT_RUNTIMES, digits="{:.0f}", table=True, live="peak rss {:.0f} MB", compare_rank=11),
    Metric("power_avg_w", "W", "power", source="telemetry", table=True),
    Metric("energy_j", "J", "energy", direction="lower", judged="trial", source="telemetry", table=True,
           compare_rank=10),
    Metric("energy_prefill_j", "J", "prefill energy", source="telemetry", runtimes=LLAMA_ANY),
    Metric("energy_decode_j", "J", "decode energy", source="telemetry", runtimes=LLAMA_ANY),
    Metric("j_per_token", "J/tok", "energy/token", direction="lower", judged="trial", source="telemetry",
           runtimes=LLAMA_ANY, table=True, compare_rank=9),
    Metric("power_method", "", "power method", kind="text", source="case"),
    Metric("temp_max_c", "°C", "max temp", source="telemetry", table=True),
    Metric("throttled", "", "throttled", kind="bool", source="telemetry", table=True),
    Metric("foreign_cpu_pct", "% core", "other CPU", source="telemetry", table=True),
    Metric("steal_pct", "%", "steal", source="telemetry"),
    # melt.agent.reference_loop's speed around the trials: the machine's own (shown, not compared)
    Metric("ref_loop_mops_s", "M it/s", "machine speed", direction="higher", source="agent", runtimes=AGENT_RUNTIMES,
           digits="{:.1f}"),
    Metric("n_trials", "", "trials", kind="int", source="case", table=True),
    Metric("cv_pct", "%", "cv", source="case", digits="{:.1f}", table=True),
    Metric("validity", "", "validity", kind="text", source="case", digits="{}"),
    Metric("ppl", "", "perplexity", direction="lower", judged="paired", source="quality", runtimes=LLAMA_ANY,
           digits="{:.4f}", table=True, compare_rank=20, units="tokens"),
    Metric("accuracy_pct", "%", "accuracy", direction="higher", judged="paired", source="quality", runtimes=LLAMA,
           digits="{:.1f}", table=True, compare_rank=22, units="items"),
    Metric("accuracy_norm_pct", "%", "accuracy (norm)", direction="higher", judged="paired", source="quality",
           runtimes=LLAMA, digits="{:.1f}", compare_rank=23, units="items"),
    # llama_cpp_cli: llama-perplexity --multiple-choice, by mean log-probability per token of the choice's tokens
    # after the prefix all choices share (perplexity.cpp multiple_choice_score): neither acc nor acc_norm
    Metric("accuracy_tok_pct", "%", "accuracy (per token)", direction="higher", judged="paired", source="quality",
           runtimes=frozenset({"llama_cpp_cli"}), digits="{:.1f}", table=True, compare_rank=24, units="items"),
    Metric("kld_mean", "", "KLD mean", direction="lower", judged="paired", source="quality", runtimes=LLAMA_ANY,
           digits="{:.5f}", table=True, compare_rank=21, units="tokens"),  # nats per token, against quality.reference
    Metric("kld_p99", "", "KLD p99", direction="lower", source="quality", runtimes=LLAMA_ANY),
    Metric("top1_agree_pct", "%", "top-1 agree", direction="higher", source="quality", runtimes=LLAMA_ANY,
           digits="{:.1f}"),
    Metric("ppl_ratio", "", "PPL ratio", direction="lower", source="quality", runtimes=LLAMA_ANY, digits="{:.4f}"),
    # --- the sustained protocol (protocol.sustained_s): melt.analysis.sustained; empty for other cases ---
    Metric("burst_decode_tok_s", "tok/s", "burst decode", direction="higher", judged="info", source="sustained",
           runtimes=LLAMA_ANY, digits="{:.2f}", compare_rank=31),
    Metric("sustained_decode_tok_s", "tok/s", "sustained decode", direction="higher", judged="trial",
           source="sustained", runtimes=LLAMA_ANY, digits="{:.2f}", compare_rank=30),
    Metric("burst_latency_p50_ms", "ms", "burst latency p50", direction="lower", judged="info", source="sustained",
           runtimes=ORT, digits="{:.3f}", compare_rank=34),
    Metric("sustained_latency_p50_ms", "ms", "sustained latency p50", direction="lower", judged="trial",
           source="sustained", runtimes=ORT, digits="{:.3f}", compare_rank=33),
    Metric("stability_pct", "%", "stability", direction="higher", judged="trial", source="sustained",
           runtimes=EVERY, digits="{:.1f}", compare_rank=32),
    Metric("throttle_onset_s", "s", "throttle onset", source="sustained", runtimes=EVERY, digits="{:.1f}"),
    Metric("temp_at_onset_c", "°C", "temp at onset", source="sustained", runtimes=EVERY, digits="{:.1f}"),
    Metric("temp_end_c", "°C", "temp at end", source="sustained", runtimes=EVERY, digits="{:.1f}"),
    # roofline (melt.analysis.roofline): shown, never judged. The device's memory bandwidth (measured once a run:
    # telemetry.bandwidth), the bytes a decoded token reads (from the GGUF) and what decode and prefill reach
    Metric("mem_bw_read_gbs", "GB/s", "mem read BW", direction="higher", judged="info", source="roofline",
           digits="{:.1f}", compare_rank=40),
    Metric("mem_bw_copy_gbs", "GB/s", "mem copy BW", direction="higher", judged="info", source="roofline",
           compare_rank=41),
    Metric("decode_bytes_per_token_mb", "MB", "bytes/token", judged="info", direction="lower", source="roofline",
           runtimes=LLAMA_ANY, compare_rank=42),
    Metric("decode_bw_gbs", "GB/s", "decode BW", direction="higher", judged="info", source="roofline",
           runtimes=LLAMA_ANY, digits="{:.2f}", compare_rank=43),
    Metric("decode_roofline_pct", "%", "roofline", direction="higher", judged="info", source="roofline",
           runtimes=LLAMA_ANY, digits="{:.0f}", compare_rank=44),
    Metric("prefill_gflops_s", "GFLOP/s", "prefill compute", direction="higher", judged="info", source="roofline",
           runtimes=LLAMA_ANY, compare_rank=45),
    Metric("prefill_peak_pct", "%", "of peak compute", direction="higher", judged="info", source="roofline",
           runtimes=LLAMA_ANY, compare_rank=46),
)  # fmt: skip

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
# summary.csv's identity columns, before the label, the params and the metrics
ID_COLUMNS = ["case_id", "device", "model", "runtime"]
SQL_TYPES = {"float": "DOUBLE", "int": "INTEGER", "bool": "BOOLEAN", "text": "VARCHAR"}


def metric(name: str) -> Metric:
    """The registry entry of `name`; KeyError for a name that is not a summary metric."""
    return BY_NAME[name]


def names(source: str | None = None) -> list[str]:
    """Metric names in summary.csv order, those of one source only where given."""
    return [m.name for m in METRICS if source is None or m.source == source]


def produced_by(runtime: str) -> set[str]:
    """The runtime-measured metrics (source runtime or agent) a case of this runtime can have."""
    return {m.name for m in METRICS if m.source in ("runtime", "agent") and runtime in m.runtimes}


def compared() -> dict[str, str]:
    """{metric: direction} of every metric a comparison looks at (judged is not None)."""
    return {m.name: m.direction for m in METRICS if m.judged}


def judged_as(kind: str) -> tuple[str, ...]:
    """The metrics judged as `kind` ('trial', 'run' or 'info')."""
    return tuple(m.name for m in METRICS if m.judged == kind)


def compare_order() -> list[str]:
    """The compared metrics in a comparison's column order."""
    return [m.name for m in sorted((m for m in METRICS if m.judged), key=lambda m: m.compare_rank)]


def unit_of(name: str) -> str:
    """The unit of a metric ('' where it has none or is not a summary metric)."""
    m = BY_NAME.get(name)
    return m.unit if m else ""
