"""The agent as one file: melt's device-side code (agent, runtimes, telemetry) in a zipapp that
runs under the device's Python with only the standard library and the runtime it drives."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

from melt.sources import cache_dir

PACKAGE = Path(__file__).resolve().parents[1]  # melt/
DEVICE_SIDE = ["__init__.py", "agent", "runtimes", "telemetry"]
MAIN = "import sys\nfrom melt.agent.__main__ import main\nsys.exit(main())\n"


def _files() -> list[tuple[str, bytes]]:
    files = []
    for entry in DEVICE_SIDE:
        path = PACKAGE / entry
        paths = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for p in paths:
            if "__pycache__" in p.parts or p.suffix == ".pyc":
                continue
            files.append((f"melt/{p.relative_to(PACKAGE)}", p.read_bytes()))
    return files


def build() -> Path:
    """The agent zipapp, named by the hash of its contents (so a device can tell it has it)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in [*_files(), ("__main__.py", MAIN.encode())]:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))  # reproducible
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:16]
    out = cache_dir() / "agents" / f"melt-agent-{digest}.pyz"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(out)
    return out
