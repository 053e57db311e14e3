"""The nightly CI example must stay runnable: every melt command in .github/workflows/nightly.yml
parses against the real CLI (commands, options, arguments), and the sweep it names validates."""

from __future__ import annotations

import re
import shlex

import click
import yaml
from conftest import ROOT

from cli import cli as app
from melt.plan import plan_sweep

WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"


def _melt_commands(script: str, env: dict[str, str]) -> list[list[str]]:
    script = re.sub(r"\\\n\s*", " ", script)  # shell line continuations
    script = re.sub(r"\$\{\{\s*env\.(\w+)\s*\}\}", lambda m: env[m.group(1)], script)
    commands = []
    for line in script.splitlines():
        for part in re.split(r"&&|\|\||;", line):
            try:
                words = shlex.split(os_expand(part.split(">>")[0].split(" > ")[0], env))
            except ValueError:  # a piece of a quoted python one-liner, split at its ';'
                assert "bin/melt" not in part, part
                continue
            if words and words[0].endswith("/melt"):
                commands.append(words[1:])
    return commands


def os_expand(word: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), m.group(0)), word)


def _parse(args: list[str]) -> click.Context:
    """Parse like `melt ARGS` would, down to the leaf command, without running it."""
    ctx = app.make_context("melt", list(args))
    command: click.Command = app
    while isinstance(command, click.Group):
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args  # click 8.2
        pending = [*protected, *ctx.args]
        name, command, rest = command.resolve_command(ctx, pending)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def test_every_melt_command_in_the_nightly_workflow_parses(tmp_path):
    workflow = yaml.safe_load(WORKFLOW.read_text())
    job = workflow["jobs"]["sweep"]
    assert "self-hosted" in job["runs-on"]
    assert workflow[True]["schedule"][0]["cron"]  # YAML 1.1 reads the key `on` as True
    env = {
        "MELT_RESULTS": str(tmp_path / "results"),
        "RUN_ID": "nightly-1-1",
        "cases": "--case 59f7ec439cf2",
        "SWEEP": "recipes/nightly-sweep.yaml",
        "LG_COORDINATOR": "",
    }  # without a lab (tests/test_labgrid.py: with)
    (tmp_path / "results" / "nightly-1-1").mkdir(parents=True)
    commands = [c for step in job["steps"] if "run" in step for c in _melt_commands(step["run"], env)]
    verbs = [c[0] for c in commands]
    assert {"sweep", "compare", "report", "results"} <= set(verbs), verbs
    for args in commands:
        ctx = _parse(args)
        assert ctx.command.name in {"sweep", "compare", "report", "export", "list", "places"}
    compare = next(c for c in commands if c[0] == "compare")
    assert "--junit" in compare and "--markdown" in compare and "--baseline-window" in compare
    confirm = [c for c in commands if c[0] == "sweep" and "--case" in c]
    assert confirm, "a flagged regression is confirmed by running its cases again"
    plan = plan_sweep(ROOT / confirm[0][1]).only(confirm[0][confirm[0].index("--case") + 1 :: 2])
    assert [c.case_id for c in plan.cases] == ["59f7ec439cf2"]
    uploads = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/upload-artifact")]
    assert uploads and uploads[0]["if"] == "always()"
    assert "report.html" in uploads[0]["with"]["path"] and "junit.xml" in uploads[0]["with"]["path"]


def test_the_nightly_sweep_validates():
    plan = plan_sweep(ROOT / "recipes" / "nightly-sweep.yaml")
    assert plan.name == "nightly"
    assert {p.name for p in plan.profiles} == {"local", "jetson-orin-nano", "raspberry-pi-5"}
    assert all(c.protocol["repetitions"] >= 10 for c in plan.cases)  # enough trials for a verdict
