"""Phones over ADB: the transport calls Debian's real `adb` client, whose server (one per test session, on a
port of its own: conftest.adb_server) talks the ADB protocol to a stand-in phone, tests/lab/adbd.py, reached
with `adb connect 127.0.0.1:PORT`. Commands run there under mksh with toybox's tools, in a tree whose paths are
a phone's; its sensors are the recorded Android tree the profile names as sensors.root."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import run_melt
from lab import adbd as lab_adbd

from melt.devices.device import reachable
from melt.devices.profile import load_profile
from melt.devices.transport import AdbTransport, TransportError
from melt.runtimes.llama_cpp_cli_output import parse_timings

LAB = Path(__file__).resolve().parent / "lab"
PROPS = {"ro.product.name": "lab", "ro.product.model": "Pixel 8", "ro.product.device": "lab",
         "ro.build.version.release": "14"}  # fmt: skip
BIN = "/data/local/tmp/llama.cpp/bin"  # where the phone's llama.cpp tools are, on the phone
WORKDIR = "/data/local/tmp/melt"  # melt's default workdir on a phone


def start_phone(folder: Path, adb_server, mode: str = "device", features: str | None = None):
    """A stand-in phone, connected to the tests' adb server; stop_phone() ends both."""
    phone = lab_adbd.start(folder / "adbd", folder / "phone with spaces", PROPS, features=features)
    try:
        adb_server.connect(phone.serial)
        if mode != "device":
            phone.set_mode(mode)
            adb_server.wait_for(phone.serial, mode)
    except BaseException:
        stop_phone(phone, adb_server)
        raise
    return phone


def stop_phone(phone, adb_server) -> None:
    adb_server.disconnect(phone.serial)
    phone.stop()


@pytest.fixture
def adbd(tmp_path, adb_server):
    """The stand-in phone's adbd (lab.adbd.Phone): its mode, its shell's variables, what runs on it."""
    phone = start_phone(tmp_path, adb_server)
    yield phone
    stop_phone(phone, adb_server)


def phone_profile(path: Path, serial: str, extra: str = "") -> Path:
    path.write_text(
        f"name: lab-pixel\nplatform: android\ntransport: {{kind: adb, serial: '{serial}'}}\nllama_cpp_bin: {BIN}\n"
        f"sensors: {{root: {LAB / 'boards' / 'android-phone'}, battery: {{current_unit: uA}}}}\n{extra}"
    )
    return path


@pytest.fixture
def phone(adbd, tmp_path):
    """(home, profile): home holds the phone's /data and /system on this machine (home / "data/local/tmp" is
    the phone's /data/local/tmp); the profile leaves the workdir to melt's default for adb."""
    bench = adbd.path(BIN) / "llama-bench"
    bench.parent.mkdir(parents=True)
    bench.write_text("#!/system/bin/sh\necho llama-bench stand-in\n")
    bench.chmod(0o755)
    return adbd.home, phone_profile(tmp_path / "pixel.yaml", adbd.serial)


def replace_tool(path: Path, text: str) -> None:
    """A phone tool replaced by a script (the link to toybox removed first, never written through)."""
    if path.exists() or path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(0o755)


def test_probe_over_adb(phone):
    home, profile = phone
    proc = run_melt("devices", "probe", profile, "--json")
    assert proc.returncode == 0, proc.stderr
    env = json.loads(proc.stdout)
    assert env["environment"]["model"] == "Pixel 8" and env["environment"]["android"] == "14"
    assert env["environment"]["cpu_count"] == 8  # from the recorded tree's /proc/cpuinfo
    assert env["environment"]["workdir"] == WORKDIR and (home / WORKDIR.lstrip("/") / "agents").is_dir()
    assert env["runtimes"]["llama_cpp_cli"]["available"] is True
    assert set(env["runtimes"]) == {"llama_cpp_cli"}  # no python in the profile: the agent is not tried
    sensors = env["sensors"]
    assert sensors["power_method"] == "battery" and sensors["power_total"] == "power.total_w"
    assert {"battery.power_w", "temp.battery_c", "cpu4.freq_mhz"} <= set(sensors["channels"])
    text = run_melt("devices", "probe", profile)
    assert text.returncode == 0 and "lab-pixel: Pixel 8" in text.stdout and "Android 14" in text.stdout
    assert "power method battery" in text.stdout


def test_probe_reports_the_profiles_capabilities_on_a_phone(phone):
    _, profile = phone
    proc = run_melt("devices", "probe", profile, "--json")
    assert proc.returncode == 0, proc.stderr
    caps = json.loads(proc.stdout)["capabilities"]
    assert caps["python"] is None and caps["python_from"].startswith("the default for adb")
    assert caps["runtimes"] == ["llama_cpp_cli"] and caps["llama_cpp_bin"].endswith("llama.cpp/bin")
    assert set(caps["refused"]) == {"llama_cpp", "onnxruntime"}
    assert {r["found"] for r in caps["refused"].values()} == {"no python (adb devices have none unless set)"}
    text = run_melt("devices", "probe", profile).stdout
    assert "capabilities (from the profile): python none" in text and "runtimes: llama_cpp_cli" in text, text
    assert "not onnxruntime: needs python, found no python (adb devices have none unless set)" in text, text


def test_unknown_serial_is_a_clear_error(phone, tmp_path):
    profile = phone_profile(tmp_path / "other.yaml", "127.0.0.1:1")  # nothing `adb connect`ed there
    proc = run_melt("devices", "probe", profile)
    assert proc.returncode == 1
    assert "adb device 127.0.0.1:1: device '127.0.0.1:1' not found" in proc.stderr, proc.stderr
    assert "check `adb devices`" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "mode, said, advice",
    [
        ("offline", "device offline", "its adbd does not answer"),
        ("unauthorized", "device unauthorized", "accept the USB debugging prompt on the phone"),
    ],
)
def test_an_offline_or_unauthorized_phone_is_a_clear_error(
    phone, adbd, adb_server, tmp_path, models, mode, said, advice
):
    """Real adb says `error: device offline`, or `device unauthorized.` and three lines of advice: melt names the
    state (not adb's last advice line) and the fix, for a probe, for `melt devices` (reachable) and in a run."""
    _, profile = phone
    adbd.set_mode(mode)
    adb_server.wait_for(adbd.serial, mode)
    proc = run_melt("devices", "probe", profile)
    assert proc.returncode == 1
    assert f"adb device {adbd.serial}: {said}; " in proc.stderr and advice in proc.stderr, proc.stderr
    ok, why = reachable(load_profile(str(profile)))
    assert not ok and said in why and advice in why
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "name: r\nmodels:\n  - id: tiny\n    runtime: llama_cpp_cli\n    source: {path: tiny.gguf}\n"
        "    workload: {prompt_tokens: [16], n_gen: 4}\nprotocol: {warmup: 0, repetitions: 1}\n"
    )
    run = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "x")
    assert run.returncode == 1
    (entry,) = json.loads((tmp_path / "r" / "x" / "run.json").read_text())["cases"].values()
    assert entry["status"] == "failed" and said in entry["reason"] and advice in entry["reason"], entry


def test_a_phone_without_shell_v2_is_refused(tmp_path, adb_server):
    """Before Android 7.0 adbd has no shell protocol v2: real adb then runs `shell:CMD`, whose exit status is
    always 0. melt refuses such a phone rather than take every failed command for a good one."""
    phone = start_phone(tmp_path, adb_server, features="cmd,stat_v2,ls_v2,fixed_push_mkdir")
    try:
        raw = adb_server.adb("-s", phone.serial, "shell", "exit 7")
        assert raw.returncode == 0  # what adb itself makes of it
        profile = phone_profile(tmp_path / "old.yaml", phone.serial)
        t = AdbTransport(load_profile(str(profile)).spec.transport)
        with pytest.raises(TransportError, match="no shell protocol v2 .* cannot pass a command's exit status"):
            t.run(["true"], 10)
    finally:
        stop_phone(phone, adb_server)


def test_shell_exit_status_streams_push_pull_and_quoting(phone, adbd, adb_server):
    home, profile = phone
    t = AdbTransport(load_profile(str(profile)).spec.transport)
    raw = adb_server.adb("-s", adbd.serial, "exec-out", "echo out; echo err >&2; exit 3")
    assert (raw.returncode, raw.stdout) == (0, "out\nerr\n")  # exec: one raw stream, no status (adb's own)
    assert t.run(["sh", "-c", "exit 7"], 10).returncode == 7
    done = t.run(["sh", "-c", "echo out; echo err >&2; exit 3"], 10)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")  # shell v2: apart
    assert t.run(["sh", "-c", "kill -9 $$"], 10).returncode == 128 + 9  # adbd's 0x80 | signal
    shell = t.run(["sh", "-c", "readlink /proc/$$/exe; command -v ls; getprop ro.product.model"], 10).stdout.split()
    assert shell[0].endswith("mksh") and shell[1:] == ["/system/bin/ls", "Pixel", "8"]  # Android's pair
    hostile = "a b $(touch pwned) `id`; c.txt"
    done = t.run(["sh", "-c", 'cd /data/local/tmp && printf %s "$1" > "$1" && cat "$1"', "sh", hostile], 10)
    assert done.returncode == 0 and done.stdout == hostile and not list(home.rglob("pwned"))
    assert (home / "data/local/tmp" / hostile).read_text() == hostile


def test_push_of_files_and_folders_and_pull_back(phone, tmp_path):
    """adb push of a file to a path whose folders do not exist yet, of a folder (its files, nested, into a new
    device folder and into one that exists), and pull of a folder: byte for byte, names with spaces."""
    home, profile = phone
    t = AdbTransport(load_profile(str(profile)).spec.transport)
    src = tmp_path / "local files"
    (src / "sub dir").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub dir" / "b c.bin").write_bytes(bytes(range(256)) * 1024)  # 256 KiB: several DATA chunks
    (src / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (src / "run.sh").chmod(0o755)
    t.push(src / "a.txt", "/data/local/tmp/new/deep/a.txt", 10)
    assert (home / "data/local/tmp/new/deep/a.txt").read_text() == "a"
    for remote in ("/data/local/tmp/fresh", "/data/local/tmp/new"):  # made by the push; already there
        t.push(src, remote, 10)
        for name in ("a.txt", "sub dir/b c.bin", "run.sh"):
            assert (home / remote.lstrip("/") / name).read_bytes() == (src / name).read_bytes(), (remote, name)
    assert not (home / "data/local/tmp/new/local files").exists()  # the files, not the folder inside
    assert t.run(["/data/local/tmp/fresh/run.sh"], 10).stdout == "ran\n"  # the mode came along
    back = tmp_path / "back"
    t.pull_dir("/data/local/tmp/fresh", back, 10)
    assert sorted(str(p.relative_to(back)) for p in back.rglob("*")) == [
        "a.txt",
        "run.sh",
        "sub dir",
        "sub dir/b c.bin",
    ]
    assert (back / "sub dir" / "b c.bin").read_bytes() == (src / "sub dir" / "b c.bin").read_bytes()
    with pytest.raises(TransportError, match="push .*cannot stat"):
        t.push(tmp_path / "missing", "/data/local/tmp/x", 10)
    with pytest.raises(TransportError, match="remote couldn't create file"):
        t.push(src / "a.txt", "/proc/melt.txt", 10)  # procfs takes no new file
    with pytest.raises(TransportError, match="pull /data/nothing failed: .*No such file"):
        t.pull_dir("/data/nothing", back, 10)


def test_llama_bench_on_a_phone(phone, models, tmp_path, llama_bench_bin):
    """runtime llama_cpp_cli: the phone's llama-bench (real llama.cpp, run by the stand-in phone),
    the POSIX sh sampler on the recorded Android tree, results in the same layout as `local`."""
    import csv
    import subprocess
    import sys

    home, profile = phone
    bench = home / "data/local/tmp/llama.cpp/bin/llama-bench"
    bench.unlink()
    bench.symlink_to(llama_bench_bin)
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    recipe = tmp_path / "phone.yaml"
    recipe.write_text(
        "name: phone\nmodels:\n  - id: tiny\n    runtime: llama_cpp_cli\n    source: {path: tiny.gguf}\n"
        "    workload: {prompt_tokens: [32], n_gen: 16}\n    params: {threads: 1}\n"
        "protocol: {warmup: 0, repetitions: 3}\ntelemetry: {interval_ms: 50, idle_s: 0.5}\n"
    )
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "p")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = tmp_path / "r" / "p"
    check = subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parent / "vendor" / "check_results.py"), str(run_dir)]
    )
    assert check.returncode == 0
    (case_dir,) = (run_dir / "cases").iterdir()
    trials = [json.loads(line) for line in (case_dir / "trials.jsonl").read_text().splitlines()]
    assert sorted(t["test"] for t in trials) == ["pp"] * 3 + ["tg"] * 3
    metrics = json.loads((case_dir / "metrics.json").read_text())
    s = metrics["summary"]
    assert s["prefill_tok_s"] > 0 and s["decode_tok_s"] > 0 and s["n_trials"] == 3
    assert s["ttft_s"] is None and "report totals" in metrics["missing"]["ttft_s"]
    assert s["power_method"] == "battery" and s["temp_max_c"] == 41.2
    with (case_dir / "trace.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) >= 10 and float(rows[-1]["battery.power_w"]) == pytest.approx(1.202147 * 4.13744, rel=1e-4)
    agent = json.loads((case_dir / "agent.json").read_text())
    assert agent["runtime"]["build_commit"] and {"idle", "prefill", "decode", "trials"} <= set(agent["phases"])
    assert metrics["telemetry"]["energy_method"].startswith("mean net power")
    # flash_attn left out: melt passed no -fa (llama-bench's own default, auto, which its records report as
    # auto) and -v, and records what llama.cpp's own log lines say auto became
    fa = agent["runtime"]["flash_attn"]
    assert fa["form"] == "on|off" and fa["args"] == [] and fa["log_args"] == ["-v"] and fa["reported"] == ["auto"]
    logs = (case_dir / "prefill.log").read_text() + (case_dir / "decode.log").read_text()
    said = [line for line in logs.splitlines() if "Flash Attention" in line and "tensor" not in line]
    assert said and fa["resolved"] == ("on" if said[-1].rstrip().endswith("enabled") else "off")
    assert metrics["effective_params"]["flash_attn"] == fa["resolved"] and metrics["effective_params"]["threads"] == 1
    with (run_dir / "summary.csv").open(newline="") as f:
        assert next(csv.DictReader(f))["flash_attn"] == f"{fa['resolved']} (auto)"
    assert agent["runtime"]["env"] == {"LC_ALL": "C"}


def test_real_prompts_on_a_phone(phone, models, tmp_path, llama_bench_bin):
    """runtime llama_cpp_cli with prompts: one llama-completion run per trial, read back from
    llama.cpp's own end-of-run timing lines."""
    home, profile = phone
    bin_dir = home / "data/local/tmp/llama.cpp/bin"
    (bin_dir / "llama-completion").symlink_to(llama_bench_bin.with_name("llama-completion"))
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    (tmp_path / "prompts.jsonl").write_text(
        json.dumps({"prompt": "We hold these truths to be self-evident"}) + "\n" + json.dumps({"prompt": "Life"}) + "\n"
    )
    recipe = tmp_path / "prompts.yaml"
    recipe.write_text(
        "name: prompts\nmodels:\n  - id: tiny\n    runtime: llama_cpp_cli\n    source: {path: tiny.gguf}\n"
        "    workload: {prompts: prompts.jsonl, n_gen: 12}\n    params: {threads: 1}\n"
        "protocol: {warmup: 1, repetitions: 4}\ntelemetry: {interval_ms: 50, idle_s: 0.3}\n"
    )
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", "q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (case_dir,) = (tmp_path / "r" / "q" / "cases").iterdir()
    trials = {t["trial"]: t for t in map(json.loads, (case_dir / "trials.jsonl").read_text().splitlines())}
    agent = json.loads((case_dir / "agent.json").read_text())
    assert len(trials) + len(agent["failed_runs"]) == 5  # a run whose timing lines llama.cpp lost is said, not guessed
    assert all(t["warmup"] is (i == 0) for i, t in trials.items())
    by_prompt = {i % 2: t["n_prompt"] for i, t in trials.items()}
    assert len(set(by_prompt.values())) == len(by_prompt)  # the two prompts, used in turn
    assert all(t["n_gen"] == 12 and t["decode_tok_s"] > 0 and t["load_s"] > 0 for t in trials.values())
    assert all(t["decimal_mark"] == "." and t["timings_format"] == "common_perf_print" for t in trials.values())
    s = json.loads((case_dir / "metrics.json").read_text())["summary"]
    counted = len([t for t in trials.values() if not t["warmup"]])
    assert s["n_trials"] == counted >= 2 and s["prefill_tok_s"] > 0 and s["decode_tok_s"] > 0 and s["load_s"] > 0
    assert s["power_method"] == "battery"


LLAMA_LAB = LAB / "llama_cpp"


def run_recipe(tmp_path, profile, body: str, run_id: str):
    recipe = tmp_path / f"{run_id}.yaml"
    recipe.write_text(body)
    proc = run_melt("run", recipe, "-d", profile, "--results", tmp_path / "r", "--run-id", run_id)
    (case_dir,) = (tmp_path / "r" / run_id / "cases").iterdir()
    return proc, case_dir


def write_script(path: Path, text: str) -> None:
    if path.exists() or path.is_symlink():
        path.unlink()
    path.write_text(text)
    path.chmod(0o755)


ISSUE_FIGURES = {"prefill_tok_s": 5 / 0.16040, "decode_tok_s": 11 / 1.23456, "load_s": 1.93361}


def test_issue_comma_timings_read_right_through_melt_run(phone, models, tmp_path):
    """melt issue 10: a board's llama.cpp printed its timings with a comma decimal mark; melt read nothing and
    recorded the runs as ok with n_gen 1. The stand-in llama-completion replays that block (the issue's own
    prompt eval line, tests/lab/llama_cpp) for every run; its --help is a 2024 build's (-fa as a bare flag)."""
    home, profile = phone
    bin_dir = home / "data/local/tmp/llama.cpp/bin"
    write_script(
        bin_dir / "llama-completion",
        "#!/bin/sh\n"
        'case "$1" in -h|--help) echo "  -fa,   --flash-attn             enable Flash Attention (default: disabled)";'
        " exit 0;; esac\n"
        'echo "Once upon a time"\n'
        f"cat '{LLAMA_LAB / 'issue10-comma-timings.log'}' >&2\n",
    )
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "Life"}) + "\n")
    proc, case_dir = run_recipe(
        tmp_path, profile,
        "name: issue\nmodels:\n  - id: tiny\n    runtime: llama_cpp_cli\n    source: {path: tiny.gguf}\n"
        "    workload: {prompts: prompts.jsonl, n_gen: 12}\n    params: {threads: 1}\n"
        "protocol: {warmup: 1, repetitions: 3}\n",
        "issue",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads((case_dir / "metrics.json").read_text())["summary"]
    for key, value in ISSUE_FIGURES.items():
        assert s[key] == pytest.approx(value, rel=1e-12), key
    assert s["n_trials"] == 3
    trials = [json.loads(line) for line in (case_dir / "trials.jsonl").read_text().splitlines()]
    assert [(t["n_prompt"], t["n_gen"], t["decimal_mark"]) for t in trials] == [(5, 12, ",")] * 4
    agent = json.loads((case_dir / "agent.json").read_text())
    assert agent["runtime"]["flash_attn"]["form"] == "flag" and agent["runtime"]["flash_attn"]["args"] == []
    import csv

    with (tmp_path / "r" / "issue" / "summary.csv").open(newline="") as f:
        (row,) = csv.DictReader(f)
    for key, value in ISSUE_FIGURES.items():  # the summary row carries the figures (6 significant digits)
        assert float(row[key]) == pytest.approx(value, rel=1e-5), key


def test_a_run_whose_timings_cannot_be_read_fails_with_them(phone, models, tmp_path):
    """The same block with its eval line garbled (thousands grouped, which printf never does): no trial is
    counted with an invented n_gen; the case fails and says which line could not be read."""
    home, profile = phone
    garbled = (LLAMA_LAB / "issue10-comma-timings.log").read_text().replace("  1234,56 ms", "1.234,56 ms")
    (tmp_path / "garbled.log").write_text(garbled)
    write_script(
        home / "data/local/tmp/llama.cpp/bin/llama-completion",
        f"#!/bin/sh\ncase \"$1\" in --help) exit 0;; esac\ncat '{tmp_path / 'garbled.log'}' >&2\n",
    )
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "Life"}) + "\n")
    proc, case_dir = run_recipe(
        tmp_path, profile,
        "name: bad\nmodels:\n  - id: tiny\n    runtime: llama_cpp_cli\n    source: {path: tiny.gguf}\n"
        "    workload: {prompts: prompts.jsonl, n_gen: 12}\n    params: {threads: 1}\n"
        "protocol: {warmup: 0, repetitions: 2}\n",
        "bad",
    )  # fmt: skip
    assert proc.returncode == 1
    run = json.loads((tmp_path / "r" / "bad" / "run.json").read_text())
    (entry,) = run["cases"].values()
    assert entry["status"] == "failed" and "no readable 'eval time' line" in entry["reason"]
    assert "1.234,56 ms /    11 runs" in entry["reason"]
    assert (case_dir / "trials.jsonl").read_text() == "" and not (case_dir / "metrics.json").exists()


@pytest.fixture(scope="session")
def comma_locale(tmp_path_factory) -> dict:
    """A de_DE.UTF-8 locale compiled into a folder of its own (LOCPATH), whose LC_NUMERIC decimal mark is ','."""
    import shutil
    import subprocess

    folder = tmp_path_factory.mktemp("locales")
    if not shutil.which("localedef") or not Path("/usr/share/i18n/locales/de_DE").is_file():
        pytest.fail("no localedef or de_DE locale source: run scripts/lab_packages.sh (Debian package locales)")
    subprocess.run(["localedef", "-i", "de_DE", "-f", "UTF-8", str(folder / "de_DE.UTF-8")], check=True)
    return {"LOCPATH": str(folder), "LC_ALL": "de_DE.UTF-8"}


def test_real_llama_completion_on_a_comma_locale_phone_prints_dots_under_melt(
    phone, adbd, models, tmp_path, llama_bench_bin, comma_locale
):
    """The real llama-completion calls setlocale(LC_ALL, "") (common/console.cpp): on a phone whose locale
    is de_DE it prints "0,25 ms". melt runs it under LC_ALL=C, so what comes back has the C locale's '.'."""
    import subprocess

    home, profile = phone
    completion = llama_bench_bin.with_name("llama-completion")
    prompt = tmp_path / "p.txt"
    prompt.write_text("We hold these truths")
    for _ in range(5):  # llama.cpp's log thread can lose a short run's last lines (upstream issue 22142)
        control = subprocess.run(
            [str(completion), "-m", str(models["gguf"]), "-t", "1", "-f", str(prompt), "-n", "4", "--temp", "0",
             "--ignore-eos", "-no-cnv"],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, env={**os.environ, **comma_locale},
        )  # fmt: skip
        if "total time" in control.stderr:
            break
    assert parse_timings(control.stderr)["decimal_mark"] == ","  # the locale is real: without LC_ALL=C, commas
    adbd.set_env(comma_locale)  # the phone's shell (and so every command melt runs there) has de_DE
    (home / "data/local/tmp/llama.cpp/bin/llama-completion").symlink_to(completion)
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": "We hold these truths"}) + "\n")
    proc, case_dir = run_recipe(
        tmp_path, profile,
        "name: de\nmodels:\n  - id: tiny\n    runtime: llama_cpp_cli\n    source: {path: tiny.gguf}\n"
        "    workload: {prompts: prompts.jsonl, n_gen: 8}\n    params: {threads: 1}\n"
        "protocol: {warmup: 0, repetitions: 3}\n",
        "de",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = [json.loads(line) for line in (case_dir / "trials.jsonl").read_text().splitlines()]
    assert trials and all(t["decimal_mark"] == "." and t["n_gen"] == 8 for t in trials)
    for log in case_dir.glob("trial_*.log"):
        assert parse_timings(log.read_text())["decimal_mark"] == "."
    agent = json.loads((case_dir / "agent.json").read_text())
    assert agent["runtime"]["env"] == {"LC_ALL": "C"}


OLD_BENCH = """#!/bin/sh
# llama-bench as builds before the flash-attention-auto change (August 2025) behave, around the real one:
# --help prints HELP; -fa's value is read as istream >> bool reads it ("1" is on, anything else off, "on"
# included), and without -fa it is off; the JSON says flash_attn true/false.
for a do case "$a" in -h|--help) cat '{help}'; exit 0;; esac; done
fa= given=
for a do
  shift
  if [ -n "$fa" ]; then if [ "$a" = 1 ]; then a=on; else a=off; fi; fa=; fi
  [ "$a" = -fa ] && fa=1 given=1
  set -- "$@" "$a"
done
[ -n "$given" ] || set -- "$@" -fa off  # its default: off (no auto yet)
'{real}' "$@" | sed -e 's/"flash_attn": 1,/"flash_attn": true,/' -e 's/"flash_attn": 0,/"flash_attn": false,/'
"""


@pytest.mark.parametrize(
    "bench, args, ok",
    [
        ("real", ["-fa", "on"], True),  # current llama-bench: its help says <on|off|auto>
        ("old", ["-fa", "1"], True),  # an old one: its recorded help says <0|1>
        ("old, with a new help", ["-fa", "on"], False),  # told "on", an old one runs without: caught
    ],
)
def test_flash_attn_as_each_llama_bench_takes_it(phone, models, tmp_path, llama_bench_bin, bench, args, ok):
    import subprocess

    home, profile = phone
    path = home / "data/local/tmp/llama.cpp/bin/llama-bench"
    if bench == "real":
        path.unlink()
        path.symlink_to(llama_bench_bin)
    else:
        help_file = LLAMA_LAB / "llama-bench-help-20e30b25.txt"
        if bench != "old":
            help_file = tmp_path / "new-help.txt"
            help_file.write_text(
                subprocess.run([str(llama_bench_bin), "--help"], capture_output=True, text=True).stdout
            )
        write_script(path, OLD_BENCH.format(help=help_file, real=llama_bench_bin))
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    proc, case_dir = run_recipe(
        tmp_path, profile,
        "name: fa\nmodels:\n  - id: tiny\n    runtime: llama_cpp_cli\n    source: {path: tiny.gguf}\n"
        "    workload: {prompt_tokens: [16], n_gen: 4}\n    params: {threads: 1, flash_attn: true}\n"
        "protocol: {warmup: 0, repetitions: 2}\n",
        "fa",
    )  # fmt: skip
    agent = json.loads((case_dir / "agent.json").read_text())
    fa = agent["runtime"]["flash_attn"]
    assert fa["asked"] == "on" and fa["args"] == args
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert fa["reported"] == ["on"] and agent["status"] == "ok"
    else:
        assert proc.returncode == 1 and fa["reported"] == ["off"]
        run = json.loads((tmp_path / "r" / "fa" / "run.json").read_text())
        (entry,) = run["cases"].values()
        assert "ran with flash_attn off but the case asks on" in entry["reason"] and "-fa on" in entry["reason"]


def test_flash_attn_on_with_a_build_that_has_none_fails_before_running(phone, models, tmp_path):
    home, profile = phone
    bench = home / "data/local/tmp/llama.cpp/bin/llama-bench"
    write_script(bench, "#!/bin/sh\necho 'usage: llama-bench [options]'; echo '  -t, --threads <n>'\n")
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    proc, case_dir = run_recipe(
        tmp_path, profile,
        "name: nofa\nmodels:\n  - id: tiny\n    runtime: llama_cpp_cli\n    source: {path: tiny.gguf}\n"
        "    workload: {prompt_tokens: [16], n_gen: 4}\n    params: {threads: 1, flash_attn: true}\n"
        "protocol: {warmup: 0, repetitions: 2}\n",
        "nofa",
    )  # fmt: skip
    assert proc.returncode == 1
    run = json.loads((tmp_path / "r" / "nofa" / "run.json").read_text())
    (entry,) = run["cases"].values()
    assert "llama-bench: this build has no -fa option" in entry["reason"]
    assert not (case_dir / "trials.jsonl").exists()  # nothing ran


@pytest.mark.parametrize("bench", ["real", "old"])
def test_params_left_out_are_the_phone_tool_s_defaults(phone, models, tmp_path, llama_bench_bin, bench):
    """A recipe with no params: melt passes no -t and no -fa, so llama-bench runs its own defaults, and records
    them as llama-bench reports them (its -t default is the one its --help prints; flash attention: auto,
    resolved through -v, on a current build; off, with no -v, on an old one)."""
    import subprocess

    home, profile = phone
    path = home / "data/local/tmp/llama.cpp/bin/llama-bench"
    if bench == "real":
        path.unlink()
        path.symlink_to(llama_bench_bin)
    else:
        write_script(path, OLD_BENCH.format(help=LLAMA_LAB / "llama-bench-help-20e30b25.txt", real=llama_bench_bin))
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    proc, case_dir = run_recipe(
        tmp_path, profile,
        "name: bare\nmodels:\n  - id: tiny\n    runtime: llama_cpp_cli\n    source: {path: tiny.gguf}\n"
        "    workload: {prompt_tokens: [16], n_gen: 4}\nprotocol: {warmup: 0, repetitions: 2}\n",
        "bare",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    agent = json.loads((case_dir / "agent.json").read_text())
    fa, eff = agent["runtime"]["flash_attn"], agent["load"]["effective_params"]
    help_text = subprocess.run([str(llama_bench_bin), "--help"], capture_output=True, text=True).stdout
    (threads,) = re.findall(r"-t, --threads <n>\s+\(default: (\d+)\)", help_text)
    assert eff["threads"] == int(threads) and {"threads", "flash_attn"} <= set(eff["defaults"])
    assert fa["asked"] == "auto" and fa["args"] == []
    if bench == "real":
        assert fa["log_args"] == ["-v"] and fa["reported"] == ["auto"] and fa["resolved"] in ("on", "off")
    else:
        assert fa["log_args"] == [] and fa["reported"] == ["off"] and fa["resolved"] == "off"
    assert eff["flash_attn"] == fa["resolved"]
