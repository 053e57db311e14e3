"""A comparison's verdicts as text for a terminal, markdown for a CI job summary, and JUnit XML
for a CI system's test view (one testcase per case and metric; regressions are failures)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from melt.analysis.compare import Comparison, MetricVerdict

MARK = {
    "worse": "🔴 worse",
    "better": "🟢 better",
    "not significant": "⚪ not significant",
    "inconclusive": "🟡 inconclusive",
    "new": "🆕 new",
    "missing": "❔ missing",
    "failed": "❌ failed",
    "untested": "· untested",
}
NOTEWORTHY = ("worse", "failed", "missing", "inconclusive", "better", "new")


def _num(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.0f}"


def _change(v: MetricVerdict) -> str:
    return "–" if v.change_pct is None else f"{v.change_pct:+.1f}%"


def _p(v: MetricVerdict) -> str:
    return "–" if v.p_value is None else f"{v.p_value:.2g}"


def basis_summary(cmp: Comparison) -> str:
    """Where the verdicts' run-to-run noise came from, for the whole comparison, in words."""
    counts = {b: sum(v.basis == b for v in cmp.verdicts) for b in ("history", "catalog", "blocks", "assumed")}
    words = {
        "history": "3+ earlier runs",
        "catalog": "the spread of 1-2 earlier runs",
        "blocks": "the spread of the baseline's time blocks",
        "assumed": f"an assumed {cmp.run_noise_pct:g}% (no history; --run-noise-pct)"
        if cmp.run_noise_pct
        else "none assumed (--run-noise-pct 0)",
    }
    parts = [f"{words[b]} for {n} test{'s' * (n != 1)}" for b, n in counts.items() if n]
    if counts["catalog"] or counts["blocks"] or counts["assumed"]:
        parts.append(f"with the drift within each run ({cmp.blocks} time blocks)")
    return ", ".join(parts) if parts else "nothing tested"


def headline(cmp: Comparison) -> str:
    counts = {k: n for k, n in cmp.counts().items() if n}
    state = "REGRESSION" if cmp.regressed else ("FAILED CASES" if cmp.failed else "no regression")
    base = ", ".join(cmp.base_runs) if len(cmp.base_runs) <= 3 else f"{len(cmp.base_runs)} runs"
    return f"{state}: {cmp.new_run} vs {base} — " + ", ".join(f"{n} {k}" for k, n in counts.items())


def to_text(cmp: Comparison, everything: bool = False) -> str:
    rows = [v for v in cmp.verdicts if everything or v.verdict in NOTEWORTHY]
    lines = [
        headline(cmp),
        f"threshold ±{cmp.threshold_pct:g}%, alpha {cmp.alpha:g} (Holm over the comparison); run-to-run noise from "
        + basis_summary(cmp),
    ]
    if rows:
        lines.append("")
        lines.append(
            f"{'verdict':<16} {'device':<16} {'case':<44} {'metric':<15} {'base':>10} {'new':>10} {'change':>8}"
        )
    for v in rows:
        lines.append(
            f"{v.verdict:<16} {v.device:<16} {v.label[:44]:<44} {v.metric:<15} {_num(v.base_median):>10} "
            f"{_num(v.new_median):>10} {_change(v):>8}  {v.reason}"
        )
    return "\n".join(lines) + "\n"


def _md_row(v: MetricVerdict) -> str:
    cells = [MARK[v.verdict], v.device, v.label, f"`{v.metric}`", _num(v.base_median), _num(v.new_median), _change(v)]
    cells += [_p(v), v.reason.replace("|", "\\|")]
    return "| " + " | ".join(cells) + " |"


def to_markdown(cmp: Comparison) -> str:
    header = (
        "| verdict | device | case | metric | base | new | change | p (Holm) | why |\n"
        "|---|---|---|---|---:|---:|---:|---:|---|"
    )
    notable = [v for v in cmp.verdicts if v.verdict in NOTEWORTHY]
    out = [f"### melt compare: {headline(cmp)}", ""]
    out.append(
        f"A change counts when it is beyond ±{cmp.threshold_pct:g}% in the metric's direction and significant "
        f"(Holm-corrected, alpha {cmp.alpha:g}), judged against the noise between runs: the case's earlier runs "
        "where the catalog has 3 or more, else an assumed run-to-run noise (or the larger spread of 1-2 earlier "
        f"runs or of the baseline's time blocks) plus the drift within each run. Here: {basis_summary(cmp)}."
    )
    out.append("")
    if notable:
        out += [header, *(_md_row(v) for v in notable), ""]
    else:
        out += ["Nothing changed beyond the threshold with significance.", ""]
    out += ["<details><summary>every case and metric</summary>", "", header]
    out += [_md_row(v) for v in cmp.verdicts]
    out += ["", "</details>", ""]
    return "\n".join(out)


def to_junit(cmp: Comparison) -> str:
    """JUnit XML: a testsuite per device; worse -> <failure>, failed -> <error>, missing and
    untested -> <skipped>; the figures ride along as properties."""
    suites = ET.Element("testsuites", name="melt compare")
    by_device: dict[str, list[MetricVerdict]] = {}
    for v in cmp.verdicts:
        by_device.setdefault(v.device, []).append(v)
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for device, rows in by_device.items():
        suite = ET.SubElement(suites, "testsuite", name=f"melt.{device}")
        counts = {"tests": len(rows), "failures": 0, "errors": 0, "skipped": 0}
        for v in rows:
            case = ET.SubElement(
                suite, "testcase", classname=f"melt.{device}.{v.model}", name=f"{v.label} [{v.metric}] ({v.case_id})"
            )
            props = ET.SubElement(case, "properties")
            for key in ("base_median", "new_median", "change_pct", "p_value", "n_base", "n_new", "verdict", "basis"):
                value = getattr(v, key)
                ET.SubElement(props, "property", name=key, value="" if value is None else str(value))
            message = f"{v.metric}: {_num(v.base_median)} -> {_num(v.new_median)} ({_change(v)}): {v.reason}"
            if v.verdict == "worse":
                ET.SubElement(case, "failure", message=message, type="regression").text = message
                counts["failures"] += 1
            elif v.verdict == "failed":
                ET.SubElement(case, "error", message=v.reason, type="case failed").text = v.reason
                counts["errors"] += 1
            elif v.verdict in ("missing", "untested", "inconclusive"):
                ET.SubElement(case, "skipped", message=f"{v.verdict}: {v.reason}")
                counts["skipped"] += 1
            else:
                ET.SubElement(case, "system-out").text = message
        for k, n in counts.items():
            suite.set(k, str(n))
            totals[k] += n
    for k, n in totals.items():
        suites.set(k, str(n))
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
