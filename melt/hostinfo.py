"""Provenance of the host side: melt's version and commit, package versions (read from metadata,
never imported), and the machine facts the agent's collectors give."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

from melt import SCHEMA_VERSION, __version__
from melt.agent import envinfo

PACKAGES = (
    "click",
    "pydantic",
    "pyyaml",
    "psutil",
    "pandas",
    "plotly",
    "numpy",
    "llama_cpp_python",
    "onnxruntime",
)


def package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def melt_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def collect() -> dict:
    return {
        "melt": __version__,
        "melt_commit": melt_commit(),
        "schema_version": SCHEMA_VERSION,
        "packages": package_versions(),
        "environment": envinfo.collect("/"),
    }
