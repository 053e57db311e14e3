"""The HTML report, from real runs: tiny generated models on a recorded Raspberry Pi 5 (power rails,
temperature, its throttle flag) and on this machine (no power sensor), plus a model that fails to
load. What the page shows is checked against the run's own files, never against typed-in numbers.
(The page in a real browser: test_report_browser.py.)"""

from __future__ import annotations

import csv
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import run_melt, write_recipe

from melt.report import comparison, figures
from melt.report.data import CaseView, load_run
from melt.report.downsample import minmax_envelope
from melt.report.figures import Scope
from melt.report.html import MAX_POINTS_PER_CHANNEL, default_output, write_report

BOARDS = Path(__file__).resolve().parent / "lab" / "boards"
RECIPE = """
name: report-lab
description: Tiny generated models on a recorded Raspberry Pi 5 and on this machine
models:
  - id: tiny-llm
    runtime: llama_cpp
    source: {path: tiny.gguf}
    workload: {prompt_tokens: [16, 64], n_gen: 1200}   # long enough a decode for two power samples
    params: {threads: 1, n_ctx: 1536}
    quality: {perplexity: {n_ctx: 64, max_chunks: 2}, choices: {limit: 6}}   # the report's quality section
  - id: tiny-vad
    runtime: onnxruntime
    source: {path: tiny_vad.onnx}
    workload:
      inputs:
        input: {shape: [1, 512]}
        state: {shape: [2, 1, 16]}
        sr: {value: 16000}
    params: {intra_op_threads: 1}
  - id: broken
    runtime: llama_cpp
    source: {path: broken.gguf}
    workload: {prompt_tokens: 16, n_gen: 4}
protocol: {warmup: 1, repetitions: 3, min_duration_s: 0.3, cooldown_s: 0.2}
telemetry: {interval_ms: 40, idle_s: 0.2}
"""
_RUNS: dict[str, object] = {}
SIX_DIGITS = 1e-5  # summary.csv keeps 6 significant digits; the page keeps the full figure


def build_lab_runs(tmp_path_factory, models) -> dict:
    """Two runs (a, b) of the same recipe on the recorded Pi 5 and on `local`; built once per session
    and shared with the browser test."""
    if "runs" in _RUNS:
        return _RUNS["runs"]
    folder = tmp_path_factory.mktemp("report-lab")
    (folder / "tiny.gguf").symlink_to(models["gguf"])
    (folder / "tiny_vad.onnx").symlink_to(models["onnx"])
    (folder / "broken.gguf").write_bytes(b"not a gguf file " * 256)
    recipe = write_recipe(folder, RECIPE)
    pi5 = folder / "pi5.yaml"
    pi5.write_text(
        "name: lab-pi5\nplatform: raspberrypi\ntransport: {kind: local}\n"
        f"sensors: {{root: {BOARDS / 'raspberry-pi-5'}, vcgencmd: /usr/bin/vcgencmd}}\n"
    )
    procs = {}
    for run_id in ("a", "b"):
        procs[run_id] = run_melt(
            "run", recipe, "-d", pi5, "-d", "local", "--results", folder / "results", "--run-id", run_id, cwd=folder
        )
    _RUNS["runs"] = {"a": folder / "results" / "a", "b": folder / "results" / "b", "procs": procs}
    return _RUNS["runs"]


@pytest.fixture(scope="session")
def lab_runs(tmp_path_factory, models) -> dict:
    return build_lab_runs(tmp_path_factory, models)


def page_data(html: str) -> dict:
    m = re.search(r'<script type="application/json" id="melt-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def summary(run_dir: Path) -> dict[str, dict]:
    with (run_dir / "summary.csv").open(newline="") as f:
        return {r["case_id"]: r for r in csv.DictReader(f)}


class Tags(HTMLParser):
    """Every start tag with its attributes, for checks on the page's structure."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def tags(html: str) -> list[tuple[str, dict]]:
    parser = Tags()
    parser.feed(html)
    return parser.tags


def test_melt_run_ends_with_the_report(lab_runs):
    for run_id in ("a", "b"):
        proc, run_dir = lab_runs["procs"][run_id], lab_runs[run_id]
        assert proc.returncode == 1, proc.stdout + proc.stderr  # the broken model's cases failed
        lines = proc.stdout.strip().splitlines()
        assert lines[-2:] == [f"results: {run_dir}", f"report: {run_dir / 'report.html'}"]
        assert (run_dir / "report.html").stat().st_size > 1_000_000  # plotly.js is inside


def test_report_is_one_offline_file(lab_runs):
    html = (lab_runs["a"] / "report.html").read_text()
    found = tags(html)
    scripts = [a for t, a in found if t == "script"]
    assert all("src" not in a for a in scripts), "every script is inline"
    assert not [t for t, _ in found if t in ("link", "img", "iframe", "object", "embed")]
    external = [a for _, a in found for k in ("src", "href", "action") if re.match(r"\w+:", a.get(k) or "")]
    assert external == [], "no reference to anything outside the file"
    assert len(re.findall(r"\* plotly\.js v\d", html)) == 1  # embedded once
    assert len(re.findall(r"Plotly\.newPlot", html)) >= 1 and html.count('id="melt-data"') == 1
    assert "connect-src 'none'" in html  # the page could not fetch even if it tried


def test_plots_carry_the_runs_own_figures(lab_runs):
    run_dir = lab_runs["a"]
    rows = summary(run_dir)
    data = page_data((run_dir / "report.html").read_text())
    plots = data["plots"]
    decode = {}
    for trace in plots["throughput"]["data"]:
        if trace["xaxis"] == "x2":
            decode.update({(trace["name"], y): x for y, x in zip(trace["y"], trace["x"])})
    expected = {(r["device"], r["label"]): float(r["decode_tok_s"]) for r in rows.values() if r["decode_tok_s"]}
    assert decode == pytest.approx(expected, rel=SIX_DIGITS)
    p99 = {y: x for t in plots["onnx"]["data"] if t["name"] == "p99" for y, x in zip(t["y"], t["x"])}
    onnx = [r for r in rows.values() if r["runtime"] == "onnxruntime"]
    assert sorted(p99.values()) == pytest.approx(sorted(float(r["latency_p99_ms"]) for r in onnx), rel=SIX_DIGITS)
    rss = sorted(y for t in plots["memory"]["data"] if t["mode"] == "markers" for y in t["y"])
    assert rss == pytest.approx(sorted(float(r["peak_rss_mb"]) for r in rows.values()), rel=SIX_DIGITS)
    # the ITL boxes are built from trials.jsonl's token stamps: their medians match summary.csv's p50
    medians = sorted(m for t in plots["itl"]["data"] for m in t["median"])
    llm = [float(r["itl_p50_ms"]) for r in rows.values() if r["itl_p50_ms"]]
    assert medians == pytest.approx(sorted(llm), rel=1e-3)


def test_missing_figures_show_the_reason_from_metrics_json(lab_runs):
    run_dir = lab_runs["a"]
    html = (run_dir / "report.html").read_text()
    local = [
        json.loads((d / "metrics.json").read_text())
        for d in (run_dir / "cases").iterdir()
        if (d / "metrics.json").is_file() and json.loads((d / "case.json").read_text())["device"] == "local"
    ]
    reason = local[0]["missing"]["j_per_token"]
    assert "no power sensor" in reason
    assert f"j_per_token: {reason}".replace("'", "&#39;") in html  # the energy section's note
    assert local[0]["summary"]["energy_j"] is None
    # the table never shows a zero for a missing figure: its cell is a dash with the reason on hover
    run = load_run(run_dir)
    from melt.report.table import build

    table = build(run.cases, with_run=False)
    energy_col = [m for m, _, _ in table.columns].index("energy_j")
    for row, case in zip(table.rows, run.cases):
        cell = row["cells"][energy_col]
        if case.device == "local" or case.status != "ok":
            assert cell.text == "—" and cell.why == case.why_missing("energy_j") and cell.sort is None


def test_failed_cases_are_shown_with_their_reason(lab_runs):
    run_dir = lab_runs["a"]
    manifest = json.loads((run_dir / "run.json").read_text())
    failed = {cid: e for cid, e in manifest["cases"].items() if e["status"] == "failed"}
    assert len(failed) == 2
    html = (run_dir / "report.html").read_text()
    rows = [a for t, a in tags(html) if t == "tr" and a.get("data-validity") == "failed"]
    assert sorted(r["data-case"] for r in rows) == sorted(failed)
    for entry in failed.values():
        assert "Failed to load model" in entry["reason"]
        assert entry["reason"].split(";")[0].replace("'", "&#39;") in html


def test_traces_are_thinned_with_phases_and_throttling(lab_runs):
    run_dir = lab_runs["a"]
    data = page_data((run_dir / "report.html").read_text())
    run = load_run(run_dir)
    ok = [c for c in run.cases if c.status == "ok"]
    assert sorted(data["traces"]) == sorted(f"a/{c.case_id}" for c in ok)
    for c in ok:
        fig = data["traces"][f"a/{c.case_id}"]
        with (c.path / "trace.csv").open(newline="") as f:
            t_s = [float(r["t_s"]) for r in csv.DictReader(f)]
        assert len(t_s) < MAX_POINTS_PER_CHANNEL  # a short trace is drawn sample by sample
        assert fig["x"] == pytest.approx([t - t_s[0] for t in t_s], abs=1e-3)
        assert all(len(t["y"]) == len(fig["x"]) for t in fig["data"])
        shapes = fig["layout"]["shapes"]
        phases = {s["legendgroup"] for s in shapes if s["name"] != "throttled"}
        assert {"idle", "load", "cooldown"} <= phases
        assert ({"prefill", "decode"} if c.runtime == "llama_cpp" else {"trials"}) <= phases
        t_end = fig["x"][-1]
        assert all(0 <= s["x0"] <= s["x1"] <= t_end + 0.5 for s in shapes)
        throttled = [s for s in shapes if s["name"] == "throttled"]
        assert bool(throttled) == bool(c.summary.get("throttled")), c.label  # agrees with the table
        names = {n for t in fig["data"] for n in t["name"].split(" = ")}
        assert ("power.total_w" in names) == (c.device == "lab-pi5")


def test_minmax_envelope_keeps_extremes_and_gaps():
    rng = np.random.default_rng(1)
    t = np.arange(6000) / 10
    y = rng.normal(5, 0.3, 6000)
    y[1234], y[4321] = 40.0, -7.0  # one spike, one dip
    y[2000:2600] = np.nan  # the sensor was away for a minute
    x, out = minmax_envelope(t, {"power.total_w": y, "flat": np.ones(6000)}, 400)
    thin = out["power.total_w"]
    assert len(x) <= 400 and len(thin) == len(x) and np.all(np.diff(x) >= 0)
    assert np.nanmax(thin) == 40.0 and np.nanmin(thin) == -7.0
    assert np.isnan(thin[(x > 205) & (x < 255)]).all()  # the gap stays a gap
    assert x[np.nanargmax(thin)] == pytest.approx(123.4, abs=1.6)  # within one bucket of when it happened
    x_small, out_small = minmax_envelope(t[:300], {"a": y[:300]}, 400)
    assert np.array_equal(out_small["a"], y[:300])  # short traces are drawn as they are


def test_sections_without_data_say_why(lab_runs):
    run = load_run(lab_runs["a"])
    onnx_only = [c for c in run.cases if c.runtime == "onnxruntime"]
    scope = figures.Scope(onnx_only)
    assert figures.throughput(onnx_only, scope).empty == "no llama.cpp cases in these runs"
    assert figures.itl(onnx_only, scope).empty == "no llama.cpp cases in these runs"
    llm_only = [c for c in run.cases if c.runtime == "llama_cpp"]
    assert figures.onnx_latency(llm_only, figures.Scope(llm_only)).empty == "no ONNX cases in these runs"
    local = [c for c in run.cases if c.device == "local" and c.status == "ok"]
    energy = figures.energy(local, figures.Scope(local))
    assert energy.empty == "no case has an energy figure" and not energy.figures
    assert any("no power sensor" in n["reason"] for n in energy.notes)


def test_two_runs_side_by_side_with_compare_verdicts(lab_runs, cli):
    from melt.analysis.compare import compare_runs

    a, b = lab_runs["a"], lab_runs["b"]
    code, out = cli("report", a, b)
    assert code == 0, out
    path = default_output([a, b])
    assert out.strip() == f"report: {path}" and path == b / "report-vs-a.html"
    html = path.read_text()
    cmp = compare_runs(a, b)
    cells = re.findall(
        r'<td class="delta c-([\w-]+)" title="[^"]*"(?: data-v="[^"]*")?>[^<]*<small>([^<]*)</small>', html
    )
    expected = [
        (v.verdict.replace(" ", "-"), f"{v.change_pct:+.1f}%" if v.change_pct is not None else v.verdict)
        for v in cmp.verdicts
        if v.metric in comparison.ORDER
    ]
    assert expected and sorted(cells) == sorted(expected)
    state = "regression" if cmp.regressed else ("failed cases" if cmp.failed else "no regression")
    assert html.count(f'big">{state}</span>') == 2  # in the overview and over the comparison table
    failed = {v.case_id for v in cmp.verdicts if v.verdict == "failed"}
    assert len(failed) == 2 and all(f'data-case="{cid}"' in html for cid in failed)
    data = page_data(html)
    assert {k.split("/")[0] for k in data["traces"]} == {"a", "b"}  # every run's traces, picked by run
    names = {t["name"] for t in data["plots"]["throughput"]["data"]}
    assert names == {f"{r} · {d}" for r in ("a", "b") for d in ("lab-pi5", "local")}


def test_report_refuses_a_folder_without_a_run(tmp_path, cli):
    code, out = cli("report", tmp_path)
    assert code == 2 and "run.json" in out
    with pytest.raises(Exception, match="run.json"):
        write_report([tmp_path])


def _view(tmp_path, label: str, **summary) -> CaseView:
    return CaseView(run_id="r", case_id=label, status="ok", reason=None, device="dev", model="m", label=label,
                    path=tmp_path, case={"runtime": "llama_cpp"}, metrics={"summary": summary})  # fmt: skip


def test_quality_section_sets_quality_against_speed_and_energy(tmp_path):
    from melt.report import quality

    cases = [
        _view(tmp_path, "fast-bad", accuracy_pct=40.0, decode_tok_s=50.0, j_per_token=0.1, energy_j=2.0),
        _view(tmp_path, "slow-good", accuracy_pct=80.0, decode_tok_s=10.0, j_per_token=0.5, energy_j=8.0),
        _view(tmp_path, "dominated", accuracy_pct=30.0, decode_tok_s=9.0, j_per_token=0.6, energy_j=9.0),
        _view(tmp_path, "no-quality", decode_tok_s=99.0),
    ]
    section = quality.quality(cases, Scope(cases))
    figs = {f.key: f.fig for f in section.figures}
    assert set(figs) == {"quality_speed", "quality_energy", "quality_per_joule"}
    front = figs["quality_speed"]["data"][-1]
    assert front["name"] == "Pareto front" and sorted(front["text"]) == ["fast-bad", "slow-good"]
    (bars,) = figs["quality_per_joule"]["data"]
    assert dict(zip(bars["y"], bars["x"], strict=True)) == pytest.approx(
        {"fast-bad": 0.4 / 2.0, "slow-good": 0.8 / 8.0, "dominated": 0.3 / 9.0})  # fmt: skip
    (note,) = section.notes  # the case without quality is named, with why
    assert note["reason"].startswith("accuracy_pct: ") and note["cases"] == ["no-quality (dev)"]


def test_quality_section_without_accuracy_uses_perplexity_lower_is_better(tmp_path):
    from melt.report import quality

    cases = [_view(tmp_path, "a", ppl=10.0, decode_tok_s=5.0), _view(tmp_path, "b", ppl=12.0, decode_tok_s=4.0)]
    section = quality.quality(cases, Scope(cases))
    (fig,) = section.figures
    assert fig.key == "quality_speed" and fig.fig["data"][-1]["text"] == ["a"]  # lower ppl and faster
    assert "perplexity — lower is better" in fig.fig["layout"]["yaxis"]["title"]["text"]
    assert quality.quality([_view(tmp_path, "c", decode_tok_s=1.0)], Scope([])).empty.startswith("no case measured")


def test_quality_section_of_phones_uses_their_per_token_accuracy(tmp_path):
    """llama_cpp_cli cases score multiple choice as llama-perplexity does (accuracy_tok_pct): with no lm-eval
    accuracy in the runs, that accuracy is the quality axis, and its per-joule figure is drawn."""
    from melt.report import quality

    cases = [
        _view(tmp_path, "phone-a", accuracy_tok_pct=60.0, ppl=9.0, decode_tok_s=8.0, energy_j=3.0),
        _view(tmp_path, "phone-b", accuracy_tok_pct=50.0, ppl=8.0, decode_tok_s=9.0, energy_j=2.0),
    ]
    section = quality.quality(cases, Scope(cases))
    figs = {f.key: f.fig for f in section.figures}
    assert "accuracy per token" in figs["quality_speed"]["layout"]["yaxis"]["title"]["text"]
    (bars,) = figs["quality_per_joule"]["data"]
    assert dict(zip(bars["y"], bars["x"], strict=True)) == pytest.approx({"phone-a": 0.6 / 3.0, "phone-b": 0.5 / 2.0})
