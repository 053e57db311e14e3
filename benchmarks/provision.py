"""Provisioning cost over the lab's SSH: the first push of a 250 MB model, and the re-push of the
same, unchanged model (budget: < 1 s: a hash lookup on the host, one `test -f` on the device).

Starts its own sshd on loopback (tests/lab/sshd.py), so it needs openssh-server and rsync.
Usage: .venv/bin/python benchmarks/provision.py [--mb 250]
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from lab import sshd as lab_sshd  # noqa: E402
from record import add_out_arg, kept_output  # noqa: E402

from melt.deadline import Deadline  # noqa: E402
from melt.devices.device import Device  # noqa: E402
from melt.devices.profile import load_profile  # noqa: E402
from melt.recipe import Source  # noqa: E402
from melt.sources import resolve  # noqa: E402

BUDGET_S = 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=int, default=250)
    add_out_arg(ap)
    args = ap.parse_args()
    with kept_output("provision", args.out):
        return push_twice(args)


def push_twice(args) -> int:
    with tempfile.TemporaryDirectory(prefix="melt-provision-") as tmp:
        tmp = Path(tmp)
        os.environ["MELT_CACHE"] = str(tmp / "cache")
        server = lab_sshd.start(tmp / "sshd")
        try:
            model = tmp / "model.gguf"
            with open(model, "wb") as f:
                for _ in range(args.mb):
                    f.write(os.urandom(1 << 20))
            profile_path = tmp / "dev.yaml"
            profile_path.write_text(
                f"name: dev\ntransport: {{kind: ssh, host: 127.0.0.1, port: {server.port}, "
                f"user: {getpass.getuser()}, identity: {server.client_key}, known_hosts: {server.known_hosts}}}\n"
                f"workdir: {tmp / 'device'}\npython: {sys.executable}\n"
            )
            profile = load_profile(str(profile_path))
            timings = {}
            for attempt in ("first push", "re-push (unchanged)"):
                start = time.monotonic()
                resolved = resolve(Source(path=str(model)), tmp)  # host side: hash (cached by size+mtime)
                device = Device(profile)
                device.prepare_model(resolved, Deadline(3600))
                device.close()
                timings[attempt] = time.monotonic() - start
                print(f"{attempt}: {timings[attempt]:.2f} s", flush=True)
        finally:
            server.stop()
    repush = timings["re-push (unchanged)"]
    verdict = "met" if repush < BUDGET_S else "NOT met"
    print(f"{args.mb} MB model; re-push {repush:.2f} s (budget < {BUDGET_S} s): {verdict}")
    return 0 if repush < BUDGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
