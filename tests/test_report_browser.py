"""The report of two real runs in a real browser: Debian's chromium, headless, driven by Playwright
(which never downloads a browser here: executable_path is the system's). The page must load
without a console error or any request beyond the file itself, draw every plot, sort and filter
its table, switch traces; a full-page screenshot is kept as a CI artifact.

No chromium is a failure, not a skip: CI installs it (scripts/lab_packages.sh)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from test_report import SIX_DIGITS, build_lab_runs

from melt.report.html import write_report

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-dev-shm-usage"]  # fmt: skip
ARTIFACTS = Path(os.environ.get("MELT_ARTIFACTS") or Path(__file__).resolve().parent / "artifacts")


def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if "MELT_ARTIFACTS" not in os.environ:  # tests/artifacts is output, never source
        (ARTIFACTS / ".gitignore").write_text("*\n")
    return ARTIFACTS


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for the module's pages (Playwright's sync API runs one instance per thread)."""
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install Debian's chromium (scripts/lab_packages.sh)"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory, models, chromium):
    runs = build_lab_runs(tmp_path_factory, models)
    report = write_report([runs["a"], runs["b"]], tmp_path_factory.mktemp("browser") / "report.html")
    url = report.as_uri()
    seen = {"requests": [], "console": [], "errors": []}
    tab = chromium.new_page(viewport={"width": 1400, "height": 900})
    tab.on("console", lambda m: seen["console"].append((m.type, m.text)))
    tab.on("pageerror", lambda e: seen["errors"].append(str(e)))

    def guard(route):  # record everything; let only the report itself through
        seen["requests"].append(route.request.url)
        if route.request.url == url:
            route.continue_()
        else:
            route.abort()

    tab.route("**/*", guard)
    tab.goto(url, wait_until="load")
    tab.wait_for_function("() => document.querySelector('#plot-trace .main-svg') !== null", timeout=30_000)
    yield tab, seen, runs
    tab.screenshot(path=str(artifacts_dir() / "report.png"), full_page=True)
    tab.close()


def summary_rows(*run_dirs: Path) -> list[dict]:
    rows = []
    for d in run_dirs:
        with (d / "summary.csv").open(newline="") as f:
            rows += list(csv.DictReader(f))
    return rows


def manifest_cases(*run_dirs: Path) -> list[dict]:
    return [e for d in run_dirs for e in json.loads((d / "run.json").read_text())["cases"].values()]


def test_loads_offline_without_errors(page):
    tab, seen, _ = page
    assert seen["requests"] == [tab.url], "the page asked for something other than itself"
    assert [m for m in seen["console"] if m[0] == "error"] == [] and seen["errors"] == []


def test_every_plot_has_drawn(page):
    tab, _, _ = page
    plots = tab.eval_on_selector_all(
        ".plot", "els => els.map(e => [e.id, !!e.querySelector('svg.main-svg'), e.querySelectorAll('.trace').length])"
    )
    ids = [p[0] for p in plots]
    assert {"plot-throughput", "plot-ttft", "plot-itl", "plot-onnx", "plot-memory", "plot-trace"} <= set(ids)
    assert {"plot-quality_speed", "plot-quality_energy"} <= set(ids)
    assert all(svg and traces > 0 for _, svg, traces in plots), plots
    # every section of figures has plots or says why it has none
    sections = tab.eval_on_selector_all(
        "main section", "els => els.map(s => [s.id, s.querySelectorAll('.plot').length, !!s.querySelector('p.empty')])"
    )
    for sid, n_plots, empty in sections:
        if sid not in ("overview", "table") and not sid.startswith("compare"):
            assert n_plots or empty, sid


def column_values(tab, metric: str) -> list[float | None]:
    return tab.evaluate(
        """metric => {
            const table = document.getElementById('cases');
            const col = Array.from(table.tHead.rows[0].cells).findIndex(th => th.dataset.metric === metric);
            return Array.from(table.tBodies[0].rows).filter(r => !r.hidden).map(r => {
                const cell = r.cells[col];  // a failed case's row has one cell with the reason
                const v = cell && cell.dataset.v; return v === undefined ? null : parseFloat(v); });
        }""",
        metric,
    )


def test_table_sorts_on_a_header_click(page):
    tab, _, runs = page
    expected = sorted(float(r["decode_tok_s"]) for r in summary_rows(runs["a"], runs["b"]) if r["decode_tok_s"])
    n_rows = len(manifest_cases(runs["a"], runs["b"]))
    header = tab.locator('#cases th[data-metric="decode_tok_s"]')
    header.click()
    up = column_values(tab, "decode_tok_s")
    assert len(up) == n_rows and up[: len(expected)] == pytest.approx(expected, rel=SIX_DIGITS)
    assert all(v is None for v in up[len(expected) :])  # cases without the figure go last
    assert header.get_attribute("aria-sort") == "ascending"
    header.click()
    down = column_values(tab, "decode_tok_s")
    assert down[: len(expected)] == pytest.approx(expected[::-1], rel=SIX_DIGITS)
    tab.locator("#cases th", has_text="device").first.click()
    devices = tab.eval_on_selector_all("#cases tbody tr", "rows => rows.map(r => r.cells[1].textContent)")
    assert devices == sorted(devices)


def visible(tab) -> list[dict]:
    return tab.eval_on_selector_all(
        "#cases tbody tr",
        "rows => rows.filter(r => !r.hidden).map(r => ({text: r.textContent, validity: r.dataset.validity}))",
    )


def test_table_filters(page):
    tab, _, runs = page
    cases = manifest_cases(runs["a"], runs["b"])
    tab.fill("#filter", "lab-pi5")
    rows = visible(tab)
    assert len(rows) == sum(c["device"] == "lab-pi5" for c in cases) and all("lab-pi5" in r["text"] for r in rows)
    assert tab.text_content("#row-count") == f"{len(rows)} of {len(cases)} cases"
    tab.fill("#filter", "local tiny-vad")  # every word must match
    assert len(visible(tab)) == sum(c["device"] == "local" and c["model"] == "tiny-vad" for c in cases)
    tab.fill("#filter", "")
    tab.select_option("#validity-filter", "failed")
    rows = visible(tab)
    assert len(rows) == sum(c["status"] == "failed" for c in cases) > 0
    assert all(r["validity"] == "failed" for r in rows)
    tab.select_option("#validity-filter", "")
    assert len(visible(tab)) == len(cases)


def test_trace_picker_switches_case(page):
    tab, _, runs = page
    options = tab.eval_on_selector_all("#trace-pick option", "os => os.map(o => o.value)")
    ok = [c for c in manifest_cases(runs["a"], runs["b"]) if c["status"] == "ok"]
    assert len(options) == len(ok)
    for key in (options[-1], options[1]):
        tab.select_option("#trace-pick", key)
        shown = tab.evaluate(
            """key => {
                const fig = JSON.parse(document.getElementById('melt-data').textContent).traces[key];
                const div = document.getElementById('plot-trace');
                return [div.data.length === fig.data.length, div.data[0].x.length === fig.x.length,
                        div.layout.shapes.length === fig.layout.shapes.length, !!div.querySelector('.main-svg')];
            }""",
            key,
        )
        assert shown == [True, True, True, True], key


def test_compare_section_colours_verdicts(page):
    tab, _, runs = page
    case_ids = {c for d in (runs["a"], runs["b"]) for c in json.loads((d / "run.json").read_text())["cases"]}
    rows = tab.eval_on_selector_all("#compare-1 tbody tr", "rows => rows.length")
    assert rows == len(case_ids)
    colours = tab.eval_on_selector_all(
        "#compare-1 td.delta", "tds => tds.map(td => getComputedStyle(td).backgroundColor)"
    )
    assert colours and all(c != "rgba(0, 0, 0, 0)" for c in colours)  # every judged cell is coloured


@pytest.fixture(scope="module")
def sustained_page(tmp_path_factory, models, chromium):
    """The report of two sustained runs (tests/test_sustained.py): the tiny models on `local`, and the tiny GGUF
    on the recorded Pi 5 whose throttle bits switch on partway."""
    from test_sustained import local_run, pi_run

    runs = {"pi": pi_run(tmp_path_factory, models)["run"], "local": local_run(tmp_path_factory, models)}
    report = write_report([runs["pi"], runs["local"]], tmp_path_factory.mktemp("browser-sustained") / "report.html")
    errors, requests = [], []
    tab = chromium.new_page(viewport={"width": 1400, "height": 900})
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.on("request", lambda r: requests.append(r.url) if r.url != report.as_uri() else None)
    tab.goto(report.as_uri(), wait_until="load")
    tab.wait_for_function("() => document.querySelector('#sustained .plot .main-svg') !== null", timeout=30_000)
    yield tab, errors + [f"request to {u}" for u in requests], runs
    tab.locator("#sustained").screenshot(path=str(artifacts_dir() / "report-sustained.png"))
    tab.close()


def test_sustained_section_draws(sustained_page):
    """A drawn figure per sustained case: trials, window medians, the hottest zone and the clock where the trace
    has them; on the Pi the throttled span shaded and the onset marked; and the ranking table by sustained rate."""
    tab, errors, runs = sustained_page
    assert errors == []
    cases = [c for d in runs.values() for c in json.loads((d / "run.json").read_text())["cases"]]
    plots = tab.eval_on_selector_all(
        "#sustained .plot",
        """els => els.map(e => ({id: e.id, svg: !!e.querySelector('svg.main-svg'), traces: e.data.length,
            names: e.data.map(t => t.name), drawn: e.querySelectorAll('.scatterlayer .trace').length,
            shapes: e.querySelectorAll('.shapelayer path').length,
            notes: Array.from(e.querySelectorAll('.annotation-text')).map(a => a.textContent)}))""",
    )
    assert len(plots) == len(cases) and all(p["svg"] and p["drawn"] == p["traces"] >= 3 for p in plots), plots
    (pi,) = [p for p in plots if p["id"].startswith("plot-sustained_pi_")]
    metrics = json.loads(next((runs["pi"] / "cases").iterdir()).joinpath("metrics.json").read_text())
    spans = metrics["sustained"]["throttled_spans_s"]
    assert pi["shapes"] == len(spans) + 1  # each throttled span shaded, and the onset line
    assert any(n.startswith(f"throttle onset {metrics['summary']['throttle_onset_s']:.1f} s") for n in pi["notes"])
    assert {"hottest zone °C", "cpu0 clock MHz"} <= set(pi["names"])
    assert tab.locator("#sustained h2").text_content().startswith("Sustained performance")
    rows = tab.eval_on_selector_all(
        "#table-sustained-ranking tbody tr", "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))"
    )
    assert len(rows) == len(cases)
    tiny = [r for r in rows if r[1].startswith("tiny ")]  # the same model and workload on both devices
    assert [r[0] for r in tiny] == ["1", "2"] and {r[2] for r in tiny} == {"pi · lab-pi5", "local · local"}
    rates = [float(r[3].split()[0].replace(",", "")) for r in tiny]
    assert rates == sorted(rates, reverse=True)  # ranked by sustained decode rate, fastest first
