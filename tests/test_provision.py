"""melt.devices.provision: free space read from every df a device may print, checked before a model is pushed
(the phone path too), a model pushed once and found again by its hash, verified on the device with
sha256sum or, where there is none, the device's Python."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_melt
from test_adb import adbd, phone, replace_tool  # noqa: F401 - the stand-in phone (real adb, tests/lab/adbd.py)

from melt.deadline import Deadline
from melt.devices.device import Device
from melt.devices.profile import load_profile
from melt.devices.provision import FREE_KB, parse_free_kb
from melt.devices.transport import AdbTransport, TransportError
from melt.sources import ResolvedModel

# -- parse_free_kb ------------------------------------------------------------------------------------
# df's last line for a path, as each implementation prints it (recorded here and on the devices named)
RECORDED = [
    ("coreutils df -Pk", "/dev/vda         264212084 28248564  78142348      27% /", 78142348),
    ("busybox df -Pk", "/dev/root              3733280   2245368   1296360  63% /", 1296360),
    ("toybox df -Pk (0.8.9)", "/dev/block/dm-45    115412520 61203952  54077496      54% /data", 54077496),
    # before toybox 0.8.5 -P and -k excluded each other and the last won: `df -Pk` printed the -k form
    ("toybox df -k", "/dev/block/dm-2  52403200 9877284  42394844  19% /data", 42394844),
    # Android's toolbox df before toybox: `path size used free blksize`, sizes in K/M/G
    ("toolbox df, decimals", "/data                    5.8G     3.1G     2.7G   4096", int(2.7 * 1024**2)),
    ("toolbox df, MB and K", "/mnt/asec              413.2M     0.0K   413.2M   4096", int(413.2 * 1024)),
    ("toolbox df, whole units", "/data                    5G     3G     2G   4096", 2 * 1024**2),
    ("toolbox df before Android 2.3", "/data: 76544K total, 63684K used, 12860K available (block size 4096)", 12860),
    ("a filesystem name with spaces", "//nas/my share    3072   1000   2072  33% /mnt/nas", 2072),
    ("busybox df -k wraps a long name", "                       3072         0      3072   0% /tmp/mnt point/x", 3072),
    ("a mount point with spaces", "tmpfs  4096  1024  3072  25% /mnt/my work dir", 3072),
]
NOT_DF = [
    "",
    "garbage",
    "Filesystem     1024-blocks     Used Available Capacity Mounted on",  # a header alone: df said no line
    "df: /nowhere: No such file or directory",
    "tmpfs 0 0 0 - /x",  # a filesystem of no blocks has no capacity: unknown, the copy itself tells
    "/data  1.2.3G  1G  1.2.3G  4096",
    "/data  5.8X  3.1X  2.7X  4096",
]


@pytest.mark.parametrize("line, kb", [(line, kb) for _, line, kb in RECORDED], ids=[r[0] for r in RECORDED])
def test_free_kb_from_each_recorded_df_form(line, kb):
    assert parse_free_kb(line) == kb


@pytest.mark.parametrize("line", NOT_DF)
def test_what_is_not_a_df_line_is_unknown(line):
    assert parse_free_kb(line) is None


# printf formats of each implementation's data line (their sources), filled with generated values
FORMS = {
    "coreutils -Pk": "{fs:<14} {size:>11} {used:>8} {avail:>9} {pct:>8}% {mnt}",
    "busybox -Pk": "{fs:<20} {size:>9} {used:>9} {avail:>9} {pct:>3}% {mnt}",
    "toybox -Pk": "{fs:<14} {size:>11} {used} {avail:>9} {pct:>8}% {mnt}",
    "toybox -k": "{fs:<14} {size} {used} {avail} {pct:>3}% {mnt}",
}
NAMES = ["/dev/sda1", "tmpfs", "//server/my share", "user@host:/a b c", "a-very-long-device-mapper-name-0123456789"]
MOUNTS = ["/", "/data", "/mnt/usb stick", "/home/user/My Files 2"]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("seed", range(5))
def test_free_kb_from_generated_lines(form, seed):
    rng = random.Random(seed)
    for fs in NAMES:
        for mnt in MOUNTS:
            size = rng.randrange(1, 10 ** rng.randrange(1, 13))
            used = rng.randrange(0, size + 1)
            avail = size - used
            line = FORMS[form].format(fs=fs, size=size, used=used, avail=avail, pct=used * 100 // size, mnt=mnt)
            assert parse_free_kb(line) == avail, line


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs with a name and a mount point holding spaces, 1 MB of it used."""
    mnt = tmp_path / "mount point" / "work dir"
    mnt.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "my long tmpfs name", str(mnt)]).returncode != 0:
        pytest.fail("cannot mount a tmpfs here (the lab runs as root)")
    (mnt / "filler").write_bytes(b"\0" * 1024 * 1024)
    yield mnt
    subprocess.run(["umount", str(mnt)])


DFS = {"coreutils": None, "busybox": "busybox", "toybox": "toybox"}


@pytest.mark.parametrize("impl", DFS)
def test_free_kb_script_with_each_real_df(impl, small_disk, tmp_path):
    """FREE_KB run by sh with each real df as `df` (first on PATH), on a filesystem whose name and mount point
    have spaces: what parse_free_kb reads is what statvfs says is free. Each df's -k line parses too."""
    multicall = DFS[impl]
    df = shutil.which(multicall or "df")
    if df is None:
        pytest.fail(f"{multicall} not installed: run scripts/lab_packages.sh")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "df").symlink_to(df)
    st = os.statvfs(small_disk)
    # coreutils and busybox report f_bavail; toybox as root f_bfree (the same on a tmpfs)
    assert st.f_bavail == st.f_bfree
    free_kb = st.f_bavail * st.f_frsize // 1024
    assert 2500 < free_kb < 3100
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["sh", "-c", FREE_KB, "sh", str(small_disk)], env=env, capture_output=True, text=True)
    assert parse_free_kb(done.stdout.strip()) == free_kb, done.stdout
    for flags in ("-Pk", "-k"):
        out = subprocess.run([str(bin_dir / "df"), flags, str(small_disk)], capture_output=True, text=True).stdout
        assert parse_free_kb(out.splitlines()[-1]) == free_kb, out


# -- the phone path -----------------------------------------------------------------------------------
DF_FORMS = {  # what the phone's df prints (header and line) whatever it is asked
    "toybox": "Filesystem      1K-blocks  Used Available Use% Mounted on\n"
    "/dev/block/dm-45     115412520 115412420       100 100% /data\n",
    "old toolbox": "Filesystem             Size   Used   Free   Blksize\n"
    "/data                    5.8G     5.8G     0.1M   4096\n",
}


def _df_script(home: Path, text: str) -> None:
    replace_tool(home / "system/bin/df", f"#!/system/bin/sh\ncat <<'EOF'\n{text}EOF\n")


@pytest.mark.parametrize("form", DF_FORMS)
def test_phone_with_too_little_space_is_refused_before_the_push(phone, models, tmp_path, form):  # noqa: F811
    home, profile = phone
    _df_script(home, DF_FORMS[form])
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    recipe = tmp_path / "phone.yaml"
    recipe.write_text(
        "name: phone\nmodels:\n  - id: tiny\n    runtime: llama_cpp_cli\n    source: {path: tiny.gguf}\n"
        "    workload: {prompt_tokens: [16], n_gen: 4}\n    params: {threads: 1}\n"
        "protocol: {warmup: 0, repetitions: 1}\n"
    )
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "full")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    (entry,) = json.loads((tmp_path / "r" / "full" / "run.json").read_text())["cases"].values()
    size_mb = models["gguf"].stat().st_size / 1e6
    free_mb = {"toybox": 100, "old toolbox": int(0.1 * 1024)}[form] * 1024 / 1e6  # KiB the df line says
    assert entry["status"] == "failed", entry
    assert f"{size_mb - free_mb:.1f} MB short" in entry["reason"] and "tiny.gguf" in entry["reason"], entry["reason"]
    assert not list(home.rglob("*.gguf*")), "the model was pushed although it cannot fit"


def _model(path: Path) -> ResolvedModel:
    data = path.read_bytes()
    return ResolvedModel(path, hashlib.sha256(data).hexdigest(), len(data), "path", str(path))


class Counting:
    """The real transport, with every call it is asked for written down."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[tuple[str, list[str] | str]] = []

    @property
    def shares_files(self) -> bool:
        return self.inner.shares_files

    def run(self, argv, timeout_s):
        self.calls.append(("run", argv))
        return self.inner.run(argv, timeout_s)

    def push(self, local, remote, timeout_s):
        self.calls.append(("push", remote))
        return self.inner.push(local, remote, timeout_s)

    def pull_dir(self, remote, local, timeout_s):
        self.calls.append(("pull", remote))
        return self.inner.pull_dir(remote, local, timeout_s)

    def spawn(self, argv, state):
        self.calls.append(("spawn", argv))
        return self.inner.spawn(argv, state)

    def close(self):
        self.inner.close()


def _device(profile_path: Path) -> tuple[Device, Counting]:
    profile = load_profile(str(profile_path))
    counting = Counting(AdbTransport(profile.spec.transport))
    return Device(profile, counting), counting


def test_unchanged_model_is_not_sent_again(phone, models):  # noqa: F811
    home, profile = phone
    model = _model(models["gguf"])
    first, calls = _device(profile)
    remote = first.prepare_model(model, Deadline(60))
    assert remote == f"/data/local/tmp/melt/models/{model.sha256}/tiny.gguf"
    copy = home / remote.lstrip("/")
    assert copy.read_bytes() == models["gguf"].read_bytes() and copy.with_name("tiny.gguf.verified").is_file()
    assert [c for c in calls.calls if c[0] == "push"] == [("push", remote)]
    calls.calls.clear()
    assert first.prepare_model(model, Deadline(60)) == remote and calls.calls == []  # the same run: asks nothing
    second, calls = _device(profile)  # the next run
    second.workdir  # noqa: B018 - its mkdir, once per run, is not the model's
    calls.calls.clear()
    assert second.prepare_model(model, Deadline(60)) == remote
    (call,) = calls.calls
    assert call[0] == "run" and 'test -f "$1.verified"' in call[1][2] and call[1][-1] == remote


def test_a_copy_whose_hash_differs_is_refused_with_both(phone, models):  # noqa: F811
    home, profile = phone
    replace_tool(home / "system/bin/sha256sum", '#!/system/bin/sh\necho "' + "0" * 64 + '  $1"\n')
    model = _model(models["gguf"])
    device, _ = _device(profile)
    with pytest.raises(TransportError) as raised:
        device.prepare_model(model, Deadline(60))
    said = str(raised.value)
    assert "0" * 64 in said and model.sha256 in said and "expected" in said
    assert not list(home.rglob("*.verified")), "a copy that failed verification is not marked verified"


@pytest.mark.parametrize("python", [sys.executable, None], ids=["with python", "no python"])
def test_a_device_without_sha256sum_verifies_with_its_python(phone, models, python):  # noqa: F811
    home, profile = phone
    (home / "system/bin/sha256sum").unlink()  # a phone whose toybox has none
    profile.write_text(profile.read_text() + (f"python: {python}\n" if python else "python: false\n"))
    device, _ = _device(profile)
    assert device.t.run(["sh", "-c", "command -v sha256sum"], 10).returncode != 0
    model = _model(models["gguf"])
    if python:
        remote = device.prepare_model(model, Deadline(60))
        assert (home / (remote.lstrip("/") + ".verified")).is_file()
    else:  # neither: the copy cannot be verified, and is refused as such
        no_tool = r"sha256 \? \(no sha256sum or Python there\), expected "
        with pytest.raises(TransportError, match=no_tool + model.sha256):
            device.prepare_model(model, Deadline(60))
        assert not list(home.rglob("*.verified"))
