"""What a device can run, from what its profile declares: a Python (melt's agent) and/or a folder of
llama.cpp's tools. Planning refuses a runtime the device cannot run (melt/plan.py); the sessions ask
:func:`device_python` which Python to start the agent under; `melt devices probe` reports both.

A profile declares:

- ``python``: a path or command of a Python 3.10+ on the device; ``false``: the device has none; absent:
  the transport's default (``local``: the Python running melt; ``ssh``: ``python3``; ``adb``: none, phones
  have no Python unless one is installed, e.g. Termux, and its path set).
- ``llama_cpp_bin``: the folder on the device holding llama.cpp's tools (llama-bench, llama-completion);
  absent: none.

Each runtime needs one of these (:data:`NEEDS`): ``llama_cpp`` and ``onnxruntime`` run inside the agent,
``llama_cpp_cli`` drives the tools from a shell.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from melt.devices.profile import DeviceProfile, reach_kind
from melt.errors import Problem

# what python: absent means, per transport kind; None: no Python
DEFAULT_PYTHON = {"local": sys.executable, "ssh": "python3", "adb": None, "labgrid": "python3"}  # labgrid: over SSH


@dataclass(frozen=True)
class Need:
    """One thing a runtime needs on the device: the profile key that declares it, and what it is, in words."""

    key: str
    what: str


AGENT = Need("python", "a Python 3.10+ on the device to run melt's agent")
TOOLS = Need("llama_cpp_bin", "the folder of llama.cpp's tools (llama-bench, llama-completion) on the device")

# runtime (melt/recipe.py's model runtimes) -> what it needs; tests/test_capabilities.py checks it covers them all
NEEDS: dict[str, Need] = {"llama_cpp": AGENT, "onnxruntime": AGENT, "llama_cpp_cli": TOOLS}


def device_python(profile: DeviceProfile) -> str | None:
    """The Python to start the agent under on this device, or None when it has none.

    The profile's ``python`` as written (``~`` expanded for ``local``, where it is a path on this machine);
    ``false``: None; absent: the transport's default (:data:`DEFAULT_PYTHON`)."""
    python = profile.spec.python
    kind = reach_kind(profile.spec.transport)
    if python is False:
        return None
    if python is None:
        return DEFAULT_PYTHON.get(kind)
    return os.path.expanduser(python) if kind == "local" else python


def _no_python_why(profile: DeviceProfile) -> str:
    """Why device_python is None, as the profile says it (call only when it is)."""
    if profile.spec.python is False:
        return "python: false"
    return f"no python ({profile.spec.transport.kind} devices have none unless set)"


def has(profile: DeviceProfile, need: Need) -> bool:
    """Whether the profile declares what `need` asks for."""
    if need.key == "python":
        return device_python(profile) is not None
    return bool(getattr(profile.spec, need.key))


def missing(profile: DeviceProfile, runtime: str) -> tuple[Need, str] | None:
    """What `runtime` needs and the profile does not declare, with what the profile says instead; None when
    the device can run it. Raises KeyError for a runtime not in :data:`NEEDS`."""
    need = NEEDS[runtime]
    if has(profile, need):
        return None
    found = _no_python_why(profile) if need.key == "python" else f"no {need.key}"
    return need, found


def problem(profile: DeviceProfile, runtime: str, n_cases: int) -> Problem | None:
    """The bad-input Problem for `n_cases` cases of `runtime` planned on this device (None when it can run
    them): file = the profile, key = the profile key to set, expected = what is needed (naming the device
    and runtime), found = what the profile says. Raises KeyError for a runtime not in :data:`NEEDS`."""
    gap = missing(profile, runtime)
    if gap is None:
        return None
    need, found = gap
    cases = f"{n_cases} case{'s' if n_cases != 1 else ''}"
    expected = f"{need.what} (device {profile.name}, runtime {runtime}: {cases})"
    return Problem(str(profile.path), need.key, expected, found)


def runtimes(profile: DeviceProfile) -> list[str]:
    """The runtimes this device can run, by its profile, in :data:`NEEDS` order."""
    return [r for r in NEEDS if missing(profile, r) is None]


def declared(profile: DeviceProfile) -> dict:
    """The profile's capabilities, for `melt devices probe`:
    {"python": str | None, "python_from": how it was decided, "llama_cpp_bin": str | None,
     "runtimes": [runtime, ...], "refused": {runtime: {"key": profile key to set, "needs": what, "found": what
     the profile says}}}."""
    python = device_python(profile)
    kind = profile.spec.transport.kind
    if profile.spec.python is None:
        python_from = f"the default for {kind}" + ("" if python else " (set python: to the device's Python)")
    elif python is None:
        python_from = "the profile (python: false)"
    else:
        python_from = "the profile"
    refused = {}
    for runtime in NEEDS:
        gap = missing(profile, runtime)
        if gap:
            refused[runtime] = {"key": gap[0].key, "needs": gap[0].what, "found": gap[1]}
    return {
        "python": python,
        "python_from": python_from,
        "llama_cpp_bin": profile.spec.llama_cpp_bin,
        "runtimes": runtimes(profile),
        "refused": refused,
    }
