"""Figures of a sustained case (protocol.sustained_s): how fast the device stays under continuous load.

The agent runs the counted trials back to back for sustained_s (melt.agent.protocol) and stamps when the first
began and the last ended (t_sustained_start_ns, t_sustained_end_ns: the span). Definitions (DESIGN.md "Metric
columns"):

- burst: the trials that ran during the first BURST_SHARE (10%) of the span (began before its end), sustained:
  those that ran during the last SUSTAINED_SHARE (20%) (ended after its start); so neither window is ever empty,
  and with trials long against the span one trial can be in both (fewer than MIN_WINDOW_TRIALS: semivalid).
  llama_cpp: burst_decode_tok_s / sustained_decode_tok_s, the median of those trials' decode_tok_s
  ((n_gen - 1) / (t_last_token - t_first_token), as melt.analysis.metrics); llama_cpp_cli (one llama-completion
  run per trial, workload.prompts): the runs' own decode rates; onnxruntime: burst_latency_p50_ms /
  sustained_latency_p50_ms, the median of their latencies.
- stability_pct = sustained / burst x 100 in throughput terms (ONNX: burst latency / sustained latency x 100),
  as 3DMark's stress tests report "frame rate stability" (lowest loop / best loop); here the windows' medians.
- throttle_onset_s: seconds from the span's start to the first trace sample, within the span, at which a
  throttle flag was set or a clock was held under its maximum while busy (melt.analysis.telemetry_metrics
  .throttle_marks: the same rule as the `throttled` column); empty, with the reason, if never.
- temp_at_onset_c: the hottest thermal zone at that sample; temp_end_c: the hottest zone at the last sample
  within the span.

Validity: the case is semivalid when the sampler missed more than MAX_MISSED_PCT of its ticks within the span
(the trace cannot then place the onset), when a battery reported charging within it (a charging phone heats
and clocks otherwise than one in use), when it has no trace, or when a window holds fewer than
MIN_WINDOW_TRIALS trials.
"""

from __future__ import annotations

import statistics

from melt.analysis.strategies import STRATEGIES, for_runtime
from melt.analysis.throttle import throttle_marks
from melt.analysis.trace import Trace

BURST_SHARE = 0.10
SUSTAINED_SHARE = 0.20
MAX_MISSED_PCT = 5.0
MIN_WINDOW_TRIALS = 3


COMMON_FIGURES = ("stability_pct", "throttle_onset_s", "temp_at_onset_c", "temp_end_c")
FIGURES = (
    "burst_decode_tok_s",
    "sustained_decode_tok_s",
    "burst_latency_p50_ms",
    "sustained_latency_p50_ms",
) + COMMON_FIGURES
NOT_SUSTAINED = "not measured: the protocol has no sustained_s (melt.analysis.sustained)"


def is_sustained(case: dict) -> bool:
    """Whether a case (case.json's dict) ran the sustained protocol."""
    return bool((case.get("protocol") or {}).get("sustained_s"))


def trial_span_ns(t: dict) -> tuple[int, int] | None:
    """(start, end) of one trial on the monotonic clock (ns): a llama.cpp request to its last token, an
    inference; None where the trial has no stamps."""
    end = t["token_ns"][-1] if t.get("token_ns") else t.get("t_end_ns")
    return (t["t_start_ns"], end) if t.get("t_start_ns") is not None and end is not None else None


def trial_value(runtime: str, t: dict) -> float | None:
    """One trial's figure: decode tok/s or latency ms, as the runtime's strategy reads it (analysis.strategies)."""
    return for_runtime(runtime).trial_value(t)


def throughput_ratio(runtime: str, burst: float, sustained: float) -> float:
    """sustained / burst in throughput terms, x 100: decode rates as they are, latencies inverted."""
    return burst / sustained * 100 if for_runtime(runtime).sustained_lower_is_better else sustained / burst * 100


def figure_names(runtime: str) -> tuple[str, ...]:
    """The (burst, sustained) figures of a runtime (its analysis strategy's), () for a runtime melt does not know."""
    return for_runtime(runtime).sustained_figures if runtime in STRATEGIES else ()


def span_ns(counted: list[dict], stamps: dict) -> tuple[int, int] | None:
    """The sustained span (ns): the agent's t_sustained_start_ns / _end_ns, else the first trial's start to the
    last one's end (results written before the agent stamped the span)."""
    if stamps.get("t_sustained_start_ns") and stamps.get("t_sustained_end_ns"):
        return stamps["t_sustained_start_ns"], stamps["t_sustained_end_ns"]
    spans = [s for s in (trial_span_ns(t) for t in counted) if s]
    return (spans[0][0], spans[-1][1]) if spans else None


def series(runtime: str, counted: list[dict], start_ns: int) -> list[tuple[float, float, float]]:
    """(began, ended: seconds from the span's start; the trial's figure) per counted trial with both."""
    out = []
    for t in counted:
        s, v = trial_span_ns(t), trial_value(runtime, t)
        if s and v is not None:
            out.append(((s[0] - start_ns) / 1e9, (s[1] - start_ns) / 1e9, v))
    return out


def windows(points: list[tuple[float, float, float]], span_s: float) -> tuple[list[float], list[float]]:
    """(burst values, sustained values) of series() points: the trials that ran during the first BURST_SHARE
    and during the last SUSTAINED_SHARE of a span of span_s seconds."""
    burst = [v for a, _, v in points if a < BURST_SHARE * span_s]
    sustained = [v for _, b, v in points if b > (1 - SUSTAINED_SHARE) * span_s]
    return burst, sustained


def samples(runtime: str, counted: list[dict], details: dict) -> dict[str, list[float]]:
    """Per-trial samples for `melt compare` (melt.analysis.samples): the sustained window's trials as
    sustained_decode_tok_s / sustained_latency_p50_ms, and each as a share of the burst median (stability_pct:
    their median is the summary's stability_pct). details: metrics.json's "sustained" block."""
    if not figure_names(runtime) or not details.get("t_start_ns") or not details.get("span_s"):
        return {}
    burst, sustained = windows(series(runtime, counted, details["t_start_ns"]), details["span_s"])
    if not sustained:
        return {}
    out = {figure_names(runtime)[1]: sustained}
    if burst:
        b = statistics.median(burst)
        out["stability_pct"] = [throughput_ratio(runtime, b, x) for x in sustained if x > 0]
    return out


def _hottest(trace: Trace, t0: float, t1: float) -> dict[float, float]:
    """{trace time: the hottest thermal zone in that row} for the rows in [t0, t1] that read a zone."""
    zones = [trace.columns[c] for c in trace.channels("temp.")]
    out = {}
    for i, t in enumerate(trace.t_s):
        if t0 <= t <= t1:
            temps = [z[i] for z in zones if z[i] is not None]
            if temps:
                out[t] = max(temps)
    return out


def throttled_spans(trace: Trace, t0: float, t1: float) -> tuple[list[str], list[list[float]]]:
    """(why, [[from, to], ...] trace seconds): the samples in [t0, t1] showing throttling, joined into spans
    of consecutive samples, each reaching to the next sample, or to t1 (a flag read holds until the next read)."""
    marks = throttle_marks(trace, t0, t1)
    flagged = sorted({t for _, times in marks for t in times})
    rows = [t for t in trace.t_s if t0 <= t <= t1]
    index = {t: i for i, t in enumerate(rows)}
    spans: list[list[float]] = []
    for t in flagged:
        i = index[t]
        end = rows[i + 1] if i + 1 < len(rows) else t1
        if spans and spans[-1][1] >= t:
            spans[-1][1] = end
        else:
            spans.append([t, end])
    return [why for why, _ in marks], spans


def _ticks(trace: Trace, t0: float, t1: float) -> tuple[int, int]:
    """(ticks missed, ticks due) by the sampler within [t0, t1]: each row counts the ticks it missed before it."""
    missed = taken = 0
    for t, m in zip(trace.t_s, trace.columns.get("sampler.missed", [None] * len(trace.t_s))):
        if t0 <= t <= t1:
            taken += 1
            missed += int(m or 0)
    return missed, taken + missed


def sustained_figures(runtime: str, counted: list[dict], agent: dict, trace: Trace | None) -> dict:
    """{"figures": {metric: value}, "missing": {metric: why}, "reasons": [why semivalid], "details": for
    metrics.json's "sustained"} of a sustained case. counted: its counted trials; agent: agent.json (its
    "protocol" holds the span's stamps); trace: the case's trace (None: none was taken)."""
    figures: dict = dict.fromkeys(FIGURES)
    missing: dict = {}
    reasons: list[str] = []
    for m in FIGURES:
        if m not in COMMON_FIGURES and m not in figure_names(runtime):
            missing[m] = f"not applicable to runtime {runtime}"
    stamps = agent.get("protocol") or {}
    span = span_ns(counted, stamps)
    if span is None:
        why = "no counted trials"
        missing.update({m: why for m in FIGURES if m not in missing})
        return {"figures": figures, "missing": missing, "reasons": [why], "details": {}}
    start_ns, end_ns = span
    span_s = (end_ns - start_ns) / 1e9
    points = series(runtime, counted, start_ns)
    burst, sustained = windows(points, span_s)
    details: dict = {
        "sustained_s": stamps.get("sustained_s"),
        "t_start_ns": start_ns,
        "t_end_ns": end_ns,
        "span_s": span_s,
        "burst_window_s": [0.0, BURST_SHARE * span_s],
        "sustained_window_s": [(1 - SUSTAINED_SHARE) * span_s, span_s],
        "n_burst": len(burst),
        "n_sustained": len(sustained),
        "stopped_because": stamps.get("stopped_because"),
    }
    names = figure_names(runtime)
    for name, values in zip(names, (burst, sustained)):
        if values:
            figures[name] = for_runtime(runtime).summarise(values)
        else:  # only where no trial has a figure (a llama.cpp trial of one token has no decode rate)
            missing[name] = "no counted trial with a figure in the window"
    for label, values in (("burst", burst), ("sustained", sustained)):
        if len(values) < MIN_WINDOW_TRIALS:
            reasons.append(
                f"{len(values)} trials in the {label} window (< {MIN_WINDOW_TRIALS}): a longer sustained_s "
                "or shorter trials"
            )
    if names and figures[names[0]] and figures[names[1]]:
        b, s = figures[names[0]], figures[names[1]]
        figures["stability_pct"] = throughput_ratio(runtime, b, s)
    elif names:
        missing["stability_pct"] = missing.get(names[0]) or missing[names[1]]
    else:
        missing["stability_pct"] = f"not applicable to runtime {runtime}"
    _observed(trace, start_ns / 1e9, end_ns / 1e9, figures, missing, reasons, details)
    return {"figures": figures, "missing": missing, "reasons": reasons, "details": details}


def _observed(trace: Trace | None, t0: float, t1: float, figures: dict, missing: dict, reasons: list,
              details: dict) -> None:  # fmt: skip
    """The trace's part: onset, temperatures, throttled spans, missed ticks, charging (in place)."""
    if trace is None or not trace.t_s:
        why = "no trace: telemetry was off or the sampler wrote no samples"
        missing.update({m: why for m in ("throttle_onset_s", "temp_at_onset_c", "temp_end_c")})
        reasons.append(f"{why}: throttling during the sustained trials cannot be seen")
        return
    missed, due = _ticks(trace, t0, t1)
    details["sampler_ticks"] = {"missed": missed, "due": due, "missed_pct": missed / due * 100 if due else None}
    if due and missed / due * 100 > MAX_MISSED_PCT:
        reasons.append(
            f"the sampler missed {missed} of {due} ticks ({missed / due * 100:.1f}% > {MAX_MISSED_PCT:g}%) "
            "during the sustained trials"
        )
    charging = [t for t, v in trace.window("battery.charging", t0, t1) if v]
    details["charging_samples"] = len(charging)
    if charging:
        reasons.append(
            f"the battery was charging during the sustained trials ({len(charging)} samples, first at "
            f"{charging[0] - t0:.1f} s): a charging device heats and clocks otherwise than one in use"
        )
    hottest = _hottest(trace, t0, t1)
    figures["temp_end_c"] = hottest[max(hottest)] if hottest else None
    if figures["temp_end_c"] is None:
        missing["temp_end_c"] = "no thermal zone read during the sustained trials"
    can_see = trace.channels("throttle.") or any(c.endswith("max_freq_mhz") for c in trace.columns)
    if not can_see:
        why = "no frequency or throttle sensor on this device"
        missing.update({"throttle_onset_s": why, "temp_at_onset_c": why})
        return
    why_throttled, spans = throttled_spans(trace, t0, t1)
    details["throttle_reasons"] = why_throttled
    details["throttled_spans_s"] = [[a - t0, b - t0] for a, b in spans]
    if not spans:
        why = "not throttled during the sustained trials: no throttle flag set and no clock held under its maximum"
        missing.update({"throttle_onset_s": why, "temp_at_onset_c": why})
        return
    onset = spans[0][0]
    figures["throttle_onset_s"] = onset - t0
    figures["temp_at_onset_c"] = hottest.get(onset)
    if figures["temp_at_onset_c"] is None:
        missing["temp_at_onset_c"] = "no thermal zone read at the onset sample"
