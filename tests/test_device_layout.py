"""How the device layer is put together: no import circle through melt/devices/, device-side code (what the
agent zipapp carries) imports only the standard library and the runtime it drives, and a run on `local` goes
through the local transport like every other (spawn state and lock in the device's workdir, gone after)."""

from __future__ import annotations

import ast
import json
import sys
import time
from pathlib import Path

from conftest import spawn_melt, write_recipe

from melt.devices import agentpack

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "melt"


# -- the import graph ---------------------------------------------------------------------------------
def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of import nodes under `if TYPE_CHECKING:` (never run, so no circle)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def imported_names(path: Path, root: Path = ROOT) -> list[str]:
    """Every module a file imports, at the top or inside functions, as dotted names (`from a import b` gives
    a.b and a: b may be a module or a name in a)."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_only(tree)
    names = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package up
                name = module_name(path, root)
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names += [base] + [f"{base}.{a.name}" for a in node.names]
    return names


def import_graph() -> dict[str, set[str]]:
    """melt's modules -> the melt modules each imports (a module imports its parent packages too)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    graph = {}
    for name, path in files.items():
        edges = set()
        for imported in imported_names(path):
            parts = imported.split(".")
            edges |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & files.keys()
        graph[name] = edges - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The graph's circles, one per strongly connected component (Tarjan), each as a path that closes."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_circle(graph, set(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _circle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One closed path inside a strongly connected component: a -> b -> ... -> a."""
    start = min(component)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for w in sorted(graph[path[-1]] & component):
            if w == start:
                return path + [start]
            if w not in seen:
                seen.add(w)
                paths.append(path + [w])
    return sorted(component)


def test_the_cycle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e"} - {"e"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_and_relative_ones_are_seen(tmp_path):
    names = imported_names(PACKAGE / "devices" / "device.py")
    assert "melt.devices.lock" in names and "melt.devices.spawning" in names  # `from melt.devices import lock, ...`
    graph = import_graph()
    assert "melt.devices.transport" in graph["melt.devices.device"]
    assert "melt.devices.spawning" in graph["melt.devices.transport"]
    assert "melt.results.catalog" in graph["melt.analysis.compare"]  # imported inside run_history()
    pkg = tmp_path / "melt" / "devices"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("def f():\n    from . import y\n    from ..errors import MeltError\n")
    assert {"melt.devices.y", "melt.errors.MeltError", "melt.errors"} <= set(
        imported_names(pkg / "x.py", root=tmp_path)
    )


def test_no_import_circle_through_melt_devices():
    graph = import_graph()
    assert any(m.startswith("melt.devices.") for m in graph) and len(graph["melt.devices.device"]) > 5
    through_devices = [c for c in cycles(graph) if any(m.startswith("melt.devices") for m in c)]
    assert not through_devices, "import circles: " + "; ".join(" -> ".join(c) for c in through_devices)


# -- device-side code ---------------------------------------------------------------------------------
# the runtime each runtime module drives (numpy comes with both: llama-cpp-python and onnxruntime need it)
RUNTIME_IMPORTS = {
    "melt.runtimes.llama_cpp": {"llama_cpp", "numpy"},
    "melt.runtimes.llama_quality": {"llama_cpp", "numpy"},  # scores the logits llama_cpp's runner gives it
    "melt.runtimes.onnxruntime": {"onnxruntime", "numpy"},
}


# modules that stand alone (the standard library only, nothing of melt either), as tests/test_agent_environment.py
# checked them before this file covered all device-side code
STANDALONE = ("melt.agent.environment", "melt.agent.isa")


def optional_imports(path: Path) -> set[str]:
    """Top-level names imported inside `try: ... except ImportError` (an optional sensor library: the probe
    says it is missing and the agent goes on without it)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Try) and any(
            h.type is not None
            and {"ImportError", "ModuleNotFoundError"} & set(ast.unparse(h.type).strip("()").split(", "))
            for h in node.handlers
        ):
            for stmt in node.body:
                for n in ast.walk(stmt):
                    if isinstance(n, ast.Import):
                        found |= {a.name.split(".")[0] for a in n.names}
                    elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
                        found.add(n.module.split(".")[0])
    return found


def device_side_files() -> list[Path]:
    """What the agent zipapp carries (melt.devices.agentpack.DEVICE_SIDE)."""
    found = []
    for entry in agentpack.DEVICE_SIDE:
        path = PACKAGE / entry
        found += [path] if path.is_file() else sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)
    return found


def test_device_side_code_imports_only_the_standard_library_and_its_runtime():
    """melt/agent, melt/telemetry and melt/runtimes run on the device under its Python, from the zipapp: the
    standard library, each other, (in a runtime's own module) the runtime it drives, and optional sensor
    libraries behind `except ImportError` (pynvml); nothing else of melt."""
    files = device_side_files()
    shipped = {module_name(p) for p in files}
    assert {"melt.agent.environment", "melt.agent.isa", "melt.telemetry.sampler", "melt.runtimes.llama_cpp"} <= shipped
    wrong = {}
    for path in files:
        name = module_name(path)
        allowed = (
            set(sys.stdlib_module_names) | {"__future__"} | RUNTIME_IMPORTS.get(name, set()) | optional_imports(path)
        )
        for imported in imported_names(path):
            top = imported.split(".")[0]
            if top == "melt":
                # a melt module or a name in one: its module must be in the zipapp
                if imported not in shipped and imported.rpartition(".")[0] not in shipped:
                    wrong.setdefault(name, set()).add(imported)
            elif top not in allowed:
                wrong.setdefault(name, set()).add(imported)
    assert not wrong, f"device-side modules import what the device does not have: {wrong}"
    for name in STANDALONE:  # these two also stand alone: nothing of melt either
        path = PACKAGE.joinpath(*name.split(".")[1:]).with_suffix(".py")
        assert {n.split(".")[0] for n in imported_names(path)} <= set(sys.stdlib_module_names) | {"__future__"}


def test_the_device_side_check_catches_a_host_import(tmp_path):
    """What the check above reads: imports in functions count, only those behind `except ImportError` are
    optional."""
    fake = tmp_path / "bad.py"
    fake.write_text(
        "import os\n\ndef f():\n    import psutil\n    from melt.devices import lock\n"
        "    try:\n        import pynvml\n    except ImportError:\n        pass\n"
        "    try:\n        import yaml\n    except ValueError:\n        pass\n"
    )
    names = imported_names(fake)
    assert {"os", "psutil", "melt.devices.lock", "pynvml", "yaml"} <= set(names)
    assert optional_imports(fake) == {"pynvml"}


# -- a local run goes through the local transport -----------------------------------------------------
def test_local_run_spawns_in_the_devices_workdir_and_leaves_nothing(tmp_path, models, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MELT_CACHE", str(cache))
    workdir = cache / "devices" / "local"
    (tmp_path / "static.onnx").symlink_to(models["static_onnx"])
    recipe = write_recipe(
        tmp_path,
        """
        name: layout
        models:
          - id: static
            runtime: onnxruntime
            source: {path: static.onnx}
        protocol: {warmup: 0, repetitions: 3, min_duration_s: 1.5}
        telemetry: {interval_ms: 50, idle_s: 0.5}
        """,
    )
    proc = spawn_melt("run", recipe, "--results", tmp_path / "r", "--run-id", "lay")
    seen_state, seen_lock = None, None
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        states = list((workdir / "spawned").glob("*")) if (workdir / "spawned").is_dir() else []
        if states and (states[0] / "pid").is_file():
            seen_state = states[0].name
            seen_lock = (workdir / "lock").read_text() if (workdir / "lock").is_file() else None
            break
        time.sleep(0.02)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, out + err
    (case_dir,) = (tmp_path / "r" / "lay" / "cases").iterdir()
    assert seen_state == f"lay--{case_dir.name}", "the case ran as a spawn of the local transport"
    assert seen_lock and seen_lock.split("\t")[0] == "lay", "the run held the device's lock while it ran"
    assert list((workdir / "spawned").iterdir()) == [], "the spawn state is removed once the case ended"
    assert not (workdir / "lock").exists(), "the lock is released after the run"
    run = json.loads((tmp_path / "r" / "lay" / "run.json").read_text())
    assert run["cases"][case_dir.name]["status"] == "ok"
