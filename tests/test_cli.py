"""The CLI itself: help everywhere, and `melt --help` without the heavy runtimes installed."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from conftest import ROOT

from cli import cli as app


def commands(group: click.Group, prefix=()):
    for name, cmd in group.commands.items():
        yield (*prefix, name), cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, (*prefix, name))


@pytest.mark.parametrize("path, cmd", list(commands(app)), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_has_help(cli, path, cmd):
    assert cmd.help and len(cmd.help) > 20, f"melt {' '.join(path)} has no help text"
    code, out = cli(*path, "--help")
    assert code == 0 and "Usage:" in out


def test_help_works_without_runtimes():
    blocker = (
        "import sys; sys.modules.update(llama_cpp=None, onnxruntime=None, pandas=None, plotly=None);"
        "sys.argv = ['melt', '--help']; import cli; cli.main()"
    )
    proc = subprocess.run([sys.executable, "-c", blocker], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "validate" in proc.stdout and "run" in proc.stdout


def test_validate_without_runtimes(tmp_path):
    """Planning is host-side pure Python: no runtime import is needed to refuse or accept a recipe."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nmodels: []\n")
    code = (
        "import sys; sys.modules.update(llama_cpp=None, onnxruntime=None);"
        f"sys.argv = ['melt', 'validate', {str(recipe)!r}]; import cli; cli.main()"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "models: expected a list with at least 1 item" in proc.stderr, proc.stderr


def test_devices_list_and_probe(cli):
    code, out = cli("devices", "list", "--no-check")
    assert code == 0
    listed = {line.split()[0]: line.split()[2] for line in out.splitlines()}
    assert listed["local"] == "local" and listed["jetson-orin-nano"] == "ssh" and listed["pixel-8"] == "adb"
    from conftest import run_melt

    proc = run_melt("devices", "probe", "local", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["device"] == "local" and data["environment"]["cpu_count"] >= 1
    assert data["runtimes"]["llama_cpp"]["available"] and data["runtimes"]["onnxruntime"]["available"]
    text = run_melt("devices", "probe", "local")
    assert text.returncode == 0 and "llama_cpp: ok" in text.stdout


def test_shipped_recipes_validate(cli):
    """The quickstart's model packages are installed by the set-up, so its sources resolve."""
    for recipe in sorted((ROOT / "recipes").glob("*.yaml")):
        code, out = cli("validate", recipe)
        assert code == 0, out
