"""The "llama.cpp says" figures of runtime llama_cpp (llama_perf_prefill_tok_s, llama_perf_decode_tok_s): from
llama_perf_context's counters, empty with a reason, never 0, where the counters do not measure the trial.

llama.cpp's perf_get_data (src/llama-context.cpp) reports times of 0 when the context was made with no_perf on
(llama_context_default_params' default), counts as max(1, n), and counts a 1-token batch as eval.
"""

from __future__ import annotations

import itertools

import pytest

from melt.analysis.metrics import case_metrics
from melt.analysis.strategies.llama_cpp import llama_perf_rates, llama_trial

MS = 1_000_000
N_PROMPT, N_GEN = 64, 17


def trial(perf, warmup=False, **extra) -> dict:
    tok = [60 * MS + i * 10 * MS for i in range(N_GEN)]
    t = {
        "warmup": warmup, "duration_s": tok[-1] / 1e9, "n_prompt": N_PROMPT, "n_gen": N_GEN,
        "t_start_ns": 0, "t_tokenized_ns": 2 * MS, "t_prefill_end_ns": 52 * MS, "token_ns": tok, **extra,
    }  # fmt: skip
    if perf is not ...:
        t["llama_perf"] = perf
    return t


GOOD = {"t_p_eval_ms": 50.0, "t_eval_ms": 160.0, "n_p_eval": N_PROMPT, "n_eval": N_GEN - 1}


def test_counters_that_measure_the_trial_give_the_rates():
    prefill, decode, why = llama_perf_rates(trial(GOOD))
    assert prefill == pytest.approx(N_PROMPT / 0.050) and decode == pytest.approx((N_GEN - 1) / 0.160)
    assert why == {}


# every combination of a time (measured, zero as with no_perf, absent) and a count (right, off by one as when a
# 1-token batch is counted as eval, max(1, 0), absent), for prompt eval and eval
TIMES = [50.0, 0.0, None]
P_COUNTS = [N_PROMPT, N_PROMPT - 1, 1, None]
E_COUNTS = [N_GEN - 1, N_GEN, 1, None]


@pytest.mark.parametrize("t_p, n_p, t_e, n_e", list(itertools.product(TIMES, P_COUNTS, TIMES, E_COUNTS)))
def test_a_figure_is_right_or_empty_with_a_reason_never_zero(t_p, n_p, t_e, n_e):
    perf = {
        k: v for k, v in zip(("t_p_eval_ms", "n_p_eval", "t_eval_ms", "n_eval"), (t_p, n_p, t_e, n_e)) if v is not None
    }
    prefill, decode, why = llama_perf_rates(trial(perf))
    for value, t_ms, n, want, key in (
        (prefill, t_p, n_p, N_PROMPT, "llama_perf_prefill_tok_s"),
        (decode, t_e, n_e, N_GEN - 1, "llama_perf_decode_tok_s"),
    ):
        if t_ms and n == want:
            assert value == pytest.approx(n / t_ms * 1e3) and key not in why
        else:
            assert value is None and why[key]
            if t_ms == 0.0 and n is not None:
                assert "timed nothing" in why[key]
            elif t_ms and n is not None:
                assert "not the same work" in why[key]


@pytest.mark.parametrize(
    "t, reason",
    [
        (trial(...), "the trial has no llama_perf counters"),  # trials.jsonl written before llama_perf was kept
        (trial(None, llama_perf_missing="this llama-cpp-python has no llama_perf_context"), "no llama_perf_context"),
        (trial({"t_p_eval_ms": 0.0, "t_eval_ms": 0.0, "n_p_eval": N_PROMPT, "n_eval": N_GEN - 1}), "timed nothing"),
    ],
)
def test_trial_without_usable_counters(t, reason):
    row = llama_trial(t)
    assert row["llama_perf_prefill_tok_s"] is None and row["llama_perf_decode_tok_s"] is None
    assert reason in row["llama_perf_why"]["llama_perf_prefill_tok_s"]
    assert row["decode_tok_s"] == pytest.approx((N_GEN - 1) / 0.160)  # melt's own figures are untouched


PROTOCOL = {"warmup": 1, "repetitions": 3, "min_duration_s": 0.0, "max_repetitions": 10, "cooldown_s": 0}
CASE = {"case_id": "c", "runtime": "llama_cpp", "protocol": PROTOCOL}
ZEROS = {"t_p_eval_ms": 0.0, "t_eval_ms": 0.0, "n_p_eval": N_PROMPT, "n_eval": N_GEN - 1}


def test_case_with_zeroed_counters_has_empty_llama_perf_and_says_why():
    trials = [trial(ZEROS, warmup=True)] + [trial(ZEROS) for _ in range(3)]
    m = case_metrics(CASE, trials, {"load": {"load_s": 0.1}})
    assert m["spread"]["llama_perf_prefill_tok_s"] is None and m["spread"]["llama_perf_decode_tok_s"] is None
    assert "timed nothing" in m["missing"]["llama_perf_prefill_tok_s"]
    assert "timed nothing" in m["missing"]["llama_perf_decode_tok_s"]
    assert m["summary"]["decode_tok_s"] == pytest.approx((N_GEN - 1) / 0.160)


def test_case_where_some_trials_have_counters_keeps_theirs():
    trials = [trial(GOOD, warmup=True), trial(ZEROS), trial(GOOD), trial(GOOD)]
    m = case_metrics(CASE, trials, {"load": {"load_s": 0.1}})
    assert m["spread"]["llama_perf_decode_tok_s"]["n"] == 2
    assert m["spread"]["llama_perf_decode_tok_s"]["median"] == pytest.approx((N_GEN - 1) / 0.160)
    assert "llama_perf_decode_tok_s" not in m["missing"]


def test_onnx_and_cli_cases_say_nothing_of_llama_perf():
    m = case_metrics(
        {"case_id": "o", "runtime": "onnxruntime", "protocol": PROTOCOL},
        [{"duration_s": 0.01, "t_start_ns": 0, "t_end_ns": 10 * MS}] * 3,
        {"load": {"load_s": 0.1}},
    )
    assert not any(k.startswith("llama_perf") for k in m["missing"])


# The real llama-cpp-python: its counters measure the trial; a context made with no_perf on (as llama.cpp's
# own default, and so llama-cpp-python versions that keep it, make it) gives zeros and so no figure.


def real_trial(models, tmp_path, monkeypatch, no_perf: bool = False, without_perf_api: bool = False) -> dict:
    from melt.runtimes import llama_cpp as runtime

    if no_perf:  # llama_context_default_params' own no_perf (on), which melt turns off
        monkeypatch.setattr(runtime.Runner, "no_perf", True)
    case = {"model_path": str(models["gguf"]), "workload": {"prompt_tokens": 16, "n_gen": 8},
            "params": {"threads": 1, "n_ctx": 64}}  # fmt: skip
    runner = runtime.Runner(case, str(tmp_path))
    runner.load()
    if without_perf_api:  # a llama-cpp-python from before llama.cpp's perf API: the same library, less those two
        lib = runner.lib

        class Older:
            def __getattr__(self, name):
                if name in ("llama_perf_context", "llama_perf_context_reset"):
                    raise AttributeError(name)
                return getattr(lib, name)

        runner.lib = Older()
    try:
        runner.trial(0)  # llama.cpp's first evaluation also sets its load time: a warm-up, as the agent does
        return runner.trial(1)
    finally:
        runner.close()


def test_real_counters_measure_the_trial(models, tmp_path, monkeypatch):
    t = real_trial(models, tmp_path, monkeypatch)
    assert t["llama_perf"]["n_p_eval"] == 16 and t["llama_perf"]["n_eval"] == 7
    prefill, decode, why = llama_perf_rates(t)
    assert prefill > 0 and decode > 0 and why == {}


def test_real_no_perf_context_gives_no_figure(models, tmp_path, monkeypatch):
    t = real_trial(models, tmp_path, monkeypatch, no_perf=True)
    assert t["llama_perf"]["t_p_eval_ms"] == 0 and t["llama_perf"]["t_eval_ms"] == 0  # what such versions report
    prefill, decode, why = llama_perf_rates(t)
    assert prefill is None and decode is None and "timed nothing" in why["llama_perf_decode_tok_s"]


def test_real_llama_cpp_python_without_the_perf_api(models, tmp_path, monkeypatch):
    t = real_trial(models, tmp_path, monkeypatch, without_perf_api=True)
    assert t["llama_perf"] is None and "no llama_perf_context" in t["llama_perf_missing"]
    assert llama_trial(t)["llama_perf_why"]["llama_perf_prefill_tok_s"] == t["llama_perf_missing"]
