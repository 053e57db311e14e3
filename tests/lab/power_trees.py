"""Constructed sysfs trees for power monitors, written by the tests into a temp folder.

These are constructed, not recorded: the file layout and units follow the kernel's hwmon
documentation (Documentation/hwmon/sysfs-interface.rst, ina3221.rst, ina2xx.rst, ina238.rst) and
the Jetson device tree's `model` / `compatible` properties; the values are chosen by each test. The
tegrastats stand-in replays the lines it is given (the issue's and ../shared/samples' lines), one
per --interval, in turn.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
    return path


def device_tree(root: Path, model: str, compatible: list[str]) -> None:
    base = root / "proc" / "device-tree"
    base.mkdir(parents=True, exist_ok=True)
    (base / "model").write_bytes(model.encode() + b"\0")
    (base / "compatible").write_bytes(b"\0".join(c.encode() for c in compatible) + b"\0")


def hwmon(root: Path, n: int, chip: str, i2c: str, channels: dict[int, dict], label: str | None = None) -> Path:
    """/sys/class/hwmon/hwmonN of an I2C monitor: `name`, a `device` link to /sys/bus/i2c/devices/<i2c>,
    and per channel index the files given: {"label", "in_mv", "curr_ma", "power_uw"} (any subset)."""
    device = root / "sys" / "bus" / "i2c" / "devices" / i2c
    device.mkdir(parents=True, exist_ok=True)
    folder = root / "sys" / "class" / "hwmon" / f"hwmon{n}"
    folder.mkdir(parents=True, exist_ok=True)
    write(folder, "name", chip)
    os.symlink(os.path.relpath(device, folder), folder / "device")
    if label is not None:
        write(folder, "label", label)
    for index, files in channels.items():
        for key, fmt in (("label", "in{}_label"), ("in_mv", "in{}_input"), ("curr_ma", "curr{}_input"),
                         ("power_uw", "power{}_input")):  # fmt: skip
            if key in files:
                write(folder, fmt.format(index), str(files[key]))
    return folder


def tegrastats(root: Path, lines: list[str]) -> Path:
    """usr/bin/tegrastats under root: prints the lines in turn, one every --interval ms, until killed."""
    write(root, "usr/share/melt/tegrastats.txt", "\n".join(lines))
    path = write(
        root,
        "usr/bin/tegrastats",
        "#!/bin/sh\n# stand-in: replays recorded/constructed tegrastats lines, one per --interval ms\n"
        'ms=1000\nwhile [ $# -gt 0 ]; do [ "$1" = "--interval" ] && ms=$2; shift; done\n'
        'here=$(dirname "$0")\ns=$(awk "BEGIN{print $ms/1000}")\n'
        'while :; do while IFS= read -r line; do echo "$line" || exit 0; sleep "$s"; done '
        '< "$here/../share/melt/tegrastats.txt"; done\n',
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def thermal_zone(root: Path, n: int, kind: str, millideg: int) -> None:
    write(root, f"sys/class/thermal/thermal_zone{n}/type", kind)
    write(root, f"sys/class/thermal/thermal_zone{n}/temp", str(millideg))
