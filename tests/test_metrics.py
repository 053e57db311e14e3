"""Metric definitions on synthetic timestamps with known answers."""

from __future__ import annotations

import pytest

from melt.analysis.metrics import METRIC_COLUMNS, case_metrics, validity
from melt.analysis.stats import cv_pct, percentile
from melt.analysis.strategies.llama_cpp import llama_trial

MS = 1_000_000  # ns


def llama_record(
    start_ms: float,
    tokenized_ms: float,
    prefill_end_ms: float,
    token_ms: list[float],
    n_prompt: int,
    warmup=False,
):
    return {
        "warmup": warmup,
        "duration_s": (token_ms[-1] - start_ms) / 1e3,
        "n_prompt": n_prompt,
        "n_gen": len(token_ms),
        "t_start_ns": int(start_ms * MS),
        "t_tokenized_ns": int(tokenized_ms * MS),
        "t_prefill_end_ns": int(prefill_end_ms * MS),
        "token_ns": [int(t * MS) for t in token_ms],
        "llama_perf": {
            "t_p_eval_ms": prefill_end_ms - tokenized_ms,
            "t_eval_ms": token_ms[-1] - token_ms[0],
            "n_p_eval": n_prompt,
            "n_eval": len(token_ms) - 1,
        },
    }


PROTOCOL = {
    "warmup": 1,
    "repetitions": 3,
    "min_duration_s": 0.0,
    "max_repetitions": 100,
    "cooldown_s": 0,
    "timeout_s": 60,
}


def test_llama_trial_definitions():
    # tokenise 2 ms, prefill 100 tokens in 50 ms, first token at 60 ms, then 4 tokens 10 ms apart
    t = llama_trial(llama_record(0, 2, 52, [60, 70, 80, 90, 100], n_prompt=100))
    assert t["ttft_s"] == pytest.approx(0.060)
    assert t["prefill_tok_s"] == pytest.approx(100 / 0.050)
    assert t["decode_tok_s"] == pytest.approx(4 / 0.040)  # (n_gen - 1) / (t_last - t_first)
    assert t["e2e_s"] == pytest.approx(0.100)
    assert t["itl_ms"] == pytest.approx([10, 10, 10, 10])
    assert t["llama_perf_decode_tok_s"] == pytest.approx(100.0)


def test_single_token_has_no_decode_rate():
    t = llama_trial(llama_record(0, 1, 11, [12], n_prompt=10))
    assert t["decode_tok_s"] is None and t["itl_ms"] == []


def test_case_metrics_medians_exclude_warmups():
    trials = [
        llama_record(0, 1, 11, [20, 120, 220], n_prompt=10, warmup=True),  # slow warm-up: must not count
        llama_record(0, 1, 11, [20, 30, 40], n_prompt=10),  # decode 100 tok/s
        llama_record(0, 1, 11, [20, 40, 60], n_prompt=10),  # 50 tok/s
        llama_record(0, 1, 11, [20, 25, 30], n_prompt=10),  # 200 tok/s
    ]
    agent = {
        "load": {"load_s": 0.5},
        "peak_rss_mb": 123.0,
        "protocol": {"stopped_because": "repetitions and min_duration_s met"},
    }
    m = case_metrics({"case_id": "x", "runtime": "llama_cpp", "protocol": PROTOCOL}, trials, agent)
    s = m["summary"]
    assert set(s) == set(METRIC_COLUMNS)
    assert s["n_trials"] == 3
    assert s["decode_tok_s"] == pytest.approx(100.0)
    assert s["itl_p50_ms"] == pytest.approx(10.0)  # gaps 10,10,20,20,5,5 -> median 10
    assert s["itl_p99_ms"] == pytest.approx(20.0)
    assert s["load_s"] == 0.5 and s["peak_rss_mb"] == 123.0
    assert s["latency_p50_ms"] is None and "not applicable" in m["missing"]["latency_p50_ms"]
    assert s["energy_j"] is None and "not measured" in m["missing"]["energy_j"]
    assert s["validity"] == "semivalid" and "spread over 10%" in m["validity"]["reasons"][0]


def test_onnx_latency_percentiles_and_throughput():
    trials = [{"warmup": True, "duration_s": 1.0, "t_start_ns": 0, "t_end_ns": 10**9}]
    t = 0
    for ms in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]:
        trials.append({"warmup": False, "duration_s": ms / 1e3, "t_start_ns": t, "t_end_ns": t + ms * MS})
        t += ms * MS
    m = case_metrics({"case_id": "y", "runtime": "onnxruntime", "protocol": PROTOCOL}, trials, {})
    s = m["summary"]
    assert s["latency_p50_ms"] == pytest.approx(5.5)
    assert s["latency_p90_ms"] == pytest.approx(9.1)
    assert s["throughput_ips"] == pytest.approx(10 / 0.055)
    assert s["decode_tok_s"] is None and s["n_trials"] == 10


def test_percentile_matches_linear_interpolation():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10], 99) == 10
    assert percentile([], 50) is None
    assert percentile([1, 2, 3, 4, 5], 90) == pytest.approx(4.6)
    assert cv_pct([10, 10, 10]) == 0
    assert cv_pct([1]) is None


@pytest.mark.parametrize(
    "n, seconds, cv, stopped, verdict, reason",
    [
        (5, 3.0, 2.0, "repetitions and min_duration_s met", "valid", None),
        (5, 3.0, 15.0, "repetitions and min_duration_s met", "semivalid", "spread over 10%"),
        (2, 3.0, 1.0, "repetitions and min_duration_s met", "semivalid", "too few trials"),
        (5, 0.5, 1.0, "max_repetitions (5) reached", "semivalid", "too short"),
        (0, 0.0, None, "", "invalid", "no counted trials"),
    ],
)
def test_validity(n, seconds, cv, stopped, verdict, reason):
    protocol = {**PROTOCOL, "repetitions": 5, "min_duration_s": 1.0}
    v = validity(n, seconds, cv, protocol, {"stopped_because": stopped})
    assert v["verdict"] == verdict
    if reason:
        assert any(reason in r for r in v["reasons"])
    else:
        assert v["reasons"] == []
