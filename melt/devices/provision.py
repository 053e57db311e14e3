"""Provisioning, the same for every session and transport: files are pushed once and found again by
their content hash, a model is verified on the device (sha256) before a `.verified` marker says so, and
a push that cannot fit is refused before it starts, with the shortfall in MB.

Device layout (under the profile's workdir): agents/<file named by its hash>, models/<sha256>/<name>
(+ <name>.verified). On `local` the device's paths are this machine's, so nothing is copied: a model
is used where it is and the agent zipapp runs from melt's cache.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from melt.deadline import Deadline
from melt.devices.transport import TransportError
from melt.sources import ResolvedModel

# The device's sha256 of a file: coreutils, busybox and toybox have sha256sum; a device with none but
# Python ($2) hashes with hashlib. Prints the hex digest or nothing.
SHA256 = r"""if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
elif [ -n "$2" ]; then "$2" -c 'import hashlib,sys
h=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"
fi"""

# Free space under $1 in KiB: POSIX df -P (coreutils, busybox, toybox), else the last line of df -k.
FREE_KB = r"""{ df -Pk "$1" 2>/dev/null || df -k "$1" 2>/dev/null; } | tail -n 1"""

_SUFFIX = {"K": 1, "M": 1024, "G": 1024**2, "T": 1024**3}
# df's columns `blocks used available capacity%` (POSIX -P, and coreutils', busybox's and toybox's -k): found by
# the capacity's %, so a filesystem name or mount point with spaces in it, or busybox wrapping a long name onto
# a line of its own, does not shift them
_POSIX = re.compile(r"(?:^|\s)(\d+)\s+(\d+)\s+(\d+)\s+\d+%(?:\s|$)")
# Android's toolbox df (2.3 to 5.x): `path size used free blksize`, sizes like 823M, 5.8G or 0.0K
_TOOLBOX = re.compile(r"\s([\d.]+)([KMGT])\s+([\d.]+)([KMGT])\s+([\d.]+)([KMGT])\s+\d+\s*$")
# Android before 2.3: `/data: 76544K total, 63684K used, 12860K available (block size 4096)`
_LEGACY = re.compile(r"(\d+)K available")


def parse_free_kb(line: str) -> int | None:
    """KiB available from df's last line: the Available column of `df -Pk`/`df -k` (coreutils, busybox, toybox;
    names and mount points may hold spaces), the Free column of Android's toolbox df (K/M/G sizes, decimals
    truncated to KiB) or `NK available` (Android before 2.3). None when the line is none of these."""
    if m := _POSIX.search(line):
        return int(m.group(3))
    if m := _TOOLBOX.search(line):
        try:
            return int(float(m.group(5)) * _SUFFIX[m.group(6)])
        except ValueError:  # "1.2.3G"
            return None
    if m := _LEGACY.search(line):
        return int(m.group(1))
    return None


class Provisioner:
    """Puts files on one device. `sh(script, *args, timeout_s)` runs a POSIX sh script there (its
    arguments as $1..); `python` is the device's Python or None."""

    def __init__(self, device: str, transport, workdir: str, sh, python: str | None):
        self.device = device
        self.t = transport
        self.workdir = workdir
        self.sh = sh
        self.python = python
        self._models: dict[str, str] = {}
        self._files: dict[str, str] = {}

    def free_bytes(self, path: str) -> int | None:
        kb = parse_free_kb(self.sh(FREE_KB, path).stdout.strip())
        return kb * 1024 if kb is not None else None

    def check_space(self, need_bytes: int, what: str) -> None:
        """Raises TransportError with the shortfall in MB when the workdir cannot hold need_bytes. A df that
        says nothing usable lets the copy itself tell."""
        free = self.free_bytes(self.workdir)
        if free is not None and free < need_bytes:
            raise TransportError(
                f"device {self.device}: {self.workdir} has {_mb(free)} MB free, {what} needs "
                f"{_mb(need_bytes)} MB ({_mb(need_bytes - free)} MB short); free space or move workdir"
            )

    def file(self, local: Path, folder: str, deadline: Deadline | None = None, name: str | None = None) -> str:
        """A local file on the device under a name that carries its content hash (the agent zipapp is named so;
        others get content_name()): pushed (as .part, then renamed) only when absent. Returns its device path."""
        if self.t.shares_files:
            return str(local)
        remote = f"{self.workdir}/{folder}/{name or local.name}"
        if remote not in self._files:
            if self.sh('test -f "$1"', remote).returncode != 0:
                timeout_s = deadline.for_step(f"push of {local.name}") if deadline else 600.0
                self.sh('mkdir -p "$(dirname "$1")"', remote)
                self.check_space(local.stat().st_size, local.name)
                self.t.push(local, remote + ".part", timeout_s)
                self.sh('mv "$1.part" "$1"', remote)
            self._files[remote] = remote
        return remote

    def model(self, model: ResolvedModel, deadline: Deadline) -> str:
        """The model's path on the device: pushed once, verified there (sha256), then found by its hash
        (one `test -f` of the marker). Raises TransportError (no space: the shortfall; a hash that differs
        after the copy) or DeadlineExceeded (the push or the verification outran the case)."""
        if self.t.shares_files:
            return str(model.path)
        if model.sha256 in self._models:
            return self._models[model.sha256]
        remote = f"{self.workdir}/models/{model.sha256}/{model.path.name}"
        if self.sh('test -f "$1.verified"', remote).returncode != 0:
            self.check_space(model.size_bytes, f"the model {model.path.name}")
            self.sh('mkdir -p "$(dirname "$1")"', remote)
            self.t.push(model.path, remote, deadline.for_step("push of the model"))  # rsync --partial resumes
            got = self.sh(SHA256, remote, self.python or "", timeout_s=deadline.for_step("verification of the model"))
            digest = got.stdout.strip()
            if digest != model.sha256:
                raise TransportError(
                    f"device {self.device}: {remote} has sha256 {digest or '? (no sha256sum or Python there)'}, "
                    f"expected {model.sha256}"
                )
            self.sh(': > "$1.verified"', remote)
        self._models[model.sha256] = remote
        return remote


def _mb(n_bytes: int) -> str:
    """Bytes as MB (10**6) in words: one decimal below 10 MB, so a small shortfall is not "0 MB"."""
    return f"{n_bytes / 1e6:.1f}" if n_bytes < 10e6 else f"{n_bytes / 1e6:.0f}"


def content_name(local: Path, stem: str) -> str:
    """`stem-<first 16 hex of sha256>.<suffix>`: a name that changes when the content does."""
    digest = hashlib.sha256(local.read_bytes()).hexdigest()[:16]
    return f"{stem}-{digest}{local.suffix}"
