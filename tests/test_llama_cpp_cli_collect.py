"""runtime llama_cpp_cli, host side: pulled device files -> trials.jsonl and agent.json.

llama-completion runs: every era's timing block in both decimal marks gives its figures; a run whose timings
cannot be read (cut, garbled, 0.00 ms) is failed with the unread lines in its reason, never counted with an
invented n_gen; a case with no readable counted run fails with those lines. llama-bench: the flash_attn its
records report must be what the case asked.
"""

from __future__ import annotations

import json

import pytest
from test_llama_timing_forms import ERAS, RUNS, block_of

from melt.runtimes import llama_cpp_cli

PROTOCOL = {"warmup": 1, "repetitions": 3, "min_duration_s": 0, "cooldown_s": 0}
CASE = {"params": {"threads": 2}, "workload": {"prompts": "p.jsonl", "n_gen": 128}, "protocol": PROTOCOL}
FA_OFF = {"asked": "off", "form": "on|off", "help_line": "-fa,   --flash-attn [on|off|auto]", "args": ["-fa", "off"]}


def write_runs(case_dir, logs: list[str]) -> None:
    phases = []
    for i, log in enumerate(logs):
        (case_dir / f"trial_{i}.log").write_text(log)
        (case_dir / f"trial_{i}.out").write_text("Once upon a time")
        phases += [
            f"trial_{i}_start BOOTTIME {1_000_000_000 * (i + 1)}",
            f"trial_{i}_end BOOTTIME {1_500_000_000 * (i + 1)}",
        ]
    (case_dir / "phases.txt").write_text("\n".join(phases) + "\n")


def read(case_dir):
    trials = [json.loads(x) for x in (case_dir / "trials.jsonl").read_text().splitlines()]
    return trials, json.loads((case_dir / "agent.json").read_text())


@pytest.mark.parametrize("era", [e for e in ERAS if e != "2023-03"])  # 2023-03 has no prompt eval line
@pytest.mark.parametrize("mark", [".", ","])
def test_each_era_and_mark_gives_the_figures(tmp_path, era, mark):
    block, _ = block_of(era, "phone", mark)
    write_runs(tmp_path, ["main: load the model\n" + block] * 4)
    agent = llama_cpp_cli.collect_completion(tmp_path, CASE, None, dict(FA_OFF))
    trials, on_disk = read(tmp_path)
    assert agent == on_disk and agent["status"] == "ok" and agent["failed_runs"] == []
    assert [t["warmup"] for t in trials] == [True, False, False, False]
    (pe_ms, pe_n), (ev_ms, ev_n) = RUNS["phone"]["prompt eval"], RUNS["phone"]["eval"]
    for t in trials:
        assert t["prefill_tok_s"] == pytest.approx(pe_n / (pe_ms / 1e3), rel=1e-12)
        assert t["decode_tok_s"] == pytest.approx(ev_n / (ev_ms / 1e3), rel=1e-12)
        assert t["n_prompt"] == pe_n and t["n_gen"] == ev_n + 1 and t["decimal_mark"] == mark
    assert agent["load"]["load_s"] == pytest.approx(RUNS["phone"]["load"][0] / 1e3)
    assert agent["runtime"]["env"] == {"LC_ALL": "C"} and agent["runtime"]["flash_attn"]["args"] == ["-fa", "off"]


def test_the_issue_line_with_nothing_else_read_fails_the_run_not_n_gen_1(tmp_path):
    """The issue: a run whose eval line was not read was ok with n_gen 1 and empty rates."""
    issue = "llama_print_timings: prompt eval time =   160,40 ms /     5 tokens (   32,08 ms per token,    31,17 tokens per second)\n"  # noqa: E501
    garbled = "llama_print_timings:        eval time =  1.234,56 ms /    11 runs   (  112,23 ms per token,     8,91 tokens per second)\n"  # noqa: E501
    write_runs(tmp_path, [issue + garbled] * 4)
    agent = llama_cpp_cli.collect_completion(tmp_path, CASE)
    trials, _ = read(tmp_path)
    assert trials == [] and agent["status"] == "failed"
    assert len(agent["failed_runs"]) == 4 and all(f["unparsed"] == [garbled.strip()] for f in agent["failed_runs"])
    assert "no readable 'eval time' line" in agent["error"] and garbled.strip() in agent["error"]
    assert "run 1:" in agent["error"]  # the counted runs are the ones named, not the warm-up


@pytest.mark.parametrize("mark", [".", ","])
def test_one_run_cut_short_is_failed_and_said_the_others_count(tmp_path, mark):
    block, _ = block_of("llama_perf", "phone", mark)
    lines = block.splitlines(keepends=True)
    cut = "".join(lines[:3]) + lines[3][:50]  # the eval line cut mid-number at the end of the log
    write_runs(tmp_path, [block, block, cut, block])
    agent = llama_cpp_cli.collect_completion(tmp_path, CASE)
    trials, _ = read(tmp_path)
    assert agent["status"] == "ok" and [t["trial"] for t in trials] == [0, 1, 3]
    (failed,) = agent["failed_runs"]
    assert failed["trial"] == 2 and failed["warmup"] is False and failed["unparsed"] == [lines[3][:50].strip()]
    assert lines[3][:50].strip() in failed["reason"]
    assert agent["protocol"]["counted_trials"] == 2


@pytest.mark.parametrize(
    "log, why",
    [
        ("main: loaded\nOnce upon\n", "no timing lines; it said: Once upon"),
        ("", "no timing lines; it said: Once upon a time"),  # no log: its stdout's last line
        ("llama_perf_context_print: prompt eval time =       0.00 ms /     6 tokens (    0.00 ms per token,      inf tokens per second)\n"  # noqa: E501
         "llama_perf_context_print:        eval time =       0.35 ms /     7 runs   (    0.05 ms per token, 20114.94 tokens per second)\n",  # noqa: E501
         "'prompt eval time' reads 0.00 ms for 6: no rate"),
        ("llama_perf_context_print: prompt eval time =       0.25 ms /     6 tokens (    0.04 ms per token, 24096.39 tokens per second)\n",  # noqa: E501
         "no readable 'eval time' line"),
    ],
)  # fmt: skip
def test_runs_without_figures_fail_the_case_with_why(tmp_path, log, why):
    write_runs(tmp_path, [log] * 4)
    agent = llama_cpp_cli.collect_completion(tmp_path, CASE)
    assert agent["status"] == "failed" and why in agent["error"]
    assert read(tmp_path)[0] == []


BENCH_RECORD = {
    "build_commit": "0c1e570", "build_number": 1, "n_threads": 2, "n_prompt": 32, "n_gen": 0, "n_depth": 0,
    "avg_ts": 2000.0, "stddev_ts": 0.0, "samples_ns": [16000000, 16000000], "samples_ts": [2000.0, 2000.0],
}  # fmt: skip


def bench_files(case_dir, flash_attn) -> None:
    pp = dict(BENCH_RECORD, flash_attn=flash_attn)
    tg = dict(pp, n_prompt=0, n_gen=16, n_depth=32, avg_ts=100.0, samples_ns=[160000000] * 2, samples_ts=[100.0] * 2)
    (case_dir / "prefill.jsonl").write_text(json.dumps(pp) + "\n")
    (case_dir / "decode.jsonl").write_text(json.dumps(tg) + "\n")


@pytest.mark.parametrize(
    "asked, args, reported, ok",
    [
        ("on", ["-fa", "on"], 1, True),  # current llama-bench: enum
        ("off", ["-fa", "off"], 0, True),
        ("on", ["-fa", "1"], True, True),  # llama-bench before the change: bool
        ("off", ["-fa", "0"], False, True),
        ("on", ["-fa", "on"], False, False),  # an old llama-bench given "on": it read 0 and ran without
        ("off", ["-fa", "off"], -1, False),  # auto is not what was asked
        ("on", ["-fa", "1"], 0, False),
    ],
)
def test_llama_bench_must_report_the_flash_attn_asked(tmp_path, asked, args, reported, ok):
    bench_files(tmp_path, reported)
    fa = {"asked": asked, "form": "x", "help_line": "-fa, --flash-attn <...>", "args": args}
    agent = llama_cpp_cli.collect(tmp_path, None, fa)
    assert agent["status"] == ("ok" if ok else "failed")
    assert agent["runtime"]["flash_attn"]["reported"] == sorted({"on" if reported is True or reported == 1 else
                                                                 "auto" if reported == -1 else "off"})  # fmt: skip
    assert len((tmp_path / "trials.jsonl").read_text().splitlines()) == 4  # the raw trials are kept either way
    if not ok:
        assert f"the case asks {asked}" in agent["error"] and " ".join(args) in agent["error"]
        assert "not the case's" in agent["error"]


def test_llama_bench_without_the_field_says_nothing_about_it(tmp_path):
    bench_files(tmp_path, False)
    for name in ("prefill.jsonl", "decode.jsonl"):
        rec = json.loads((tmp_path / name).read_text())
        del rec["flash_attn"]
        (tmp_path / name).write_text(json.dumps(rec) + "\n")
    agent = llama_cpp_cli.collect(tmp_path, None, {"asked": "off", "form": "none", "help_line": None, "args": []})
    assert agent["status"] == "ok" and agent["runtime"]["flash_attn"]["reported"] is None


# flash attention left to the tool (auto): llama-bench reports "auto" (-1); how it resolved is in its -v log
V_LOG = {
    "on": "llama_context: flash_attn            = auto\nresolve_fused_ops: Flash Attention enabled\n",
    "off": "llama_context: flash_attn            = auto\nsched_reserve: Flash Attention was auto, set to disabled\n",
}
FA_AUTO = {"asked": "auto", "form": "on|off", "help_line": "-fa, --flash-attn <on|off|auto>", "args": []}


@pytest.mark.parametrize("resolved", ["on", "off"])
def test_auto_is_recorded_as_llama_bench_s_log_resolved_it(tmp_path, resolved):
    bench_files(tmp_path, -1)
    for name in ("prefill.log", "decode.log"):
        (tmp_path / name).write_text("load_tensors: loading model tensors... (load_mode = mmap)\n" + V_LOG[resolved])
    (tmp_path / "case.json").write_text(json.dumps({"params": {"threads": 2}}))
    agent = llama_cpp_cli.collect(tmp_path, None, dict(FA_AUTO, log_args=["-v"]))
    fa, eff = agent["runtime"]["flash_attn"], agent["load"]["effective_params"]
    assert agent["status"] == "ok" and fa["reported"] == ["auto"] and fa["resolved"] == resolved
    assert eff["flash_attn"] == resolved and eff["asked"]["flash_attn"] == "auto"
    assert eff["threads"] == 2 and eff["use_mmap"] is True and "flash_attn" in eff["defaults"]
    assert "threads" not in eff["defaults"] and len(eff["llama_cpp_said"]["flash_attn"]) == 4


def test_auto_without_a_log_that_says_is_unknown_not_a_failure(tmp_path):
    bench_files(tmp_path, -1)
    agent = llama_cpp_cli.collect(tmp_path, None, dict(FA_AUTO))
    fa, eff = agent["runtime"]["flash_attn"], agent["load"]["effective_params"]
    assert agent["status"] == "ok" and fa["resolved"] is None and eff["flash_attn"] is None
    assert "reports auto" in fa["resolved_why"] and eff["unknown"]["flash_attn"] == fa["resolved_why"]


@pytest.mark.parametrize(
    "form, reported, resolved",
    [("0|1", False, "off"), ("flag", False, "off"), ("on|off", 1, "on"), ("none", None, "off")],
)
def test_auto_on_a_build_without_it_is_that_build_s_default(tmp_path, form, reported, resolved):
    """Builds before the auto change take no auto: melt passes no -fa and their records say what ran (off by
    default); a build from before flash attention has none."""
    bench_files(tmp_path, reported)
    if reported is None:
        for name in ("prefill.jsonl", "decode.jsonl"):
            rec = json.loads((tmp_path / name).read_text())
            del rec["flash_attn"]
            (tmp_path / name).write_text(json.dumps(rec) + "\n")
    agent = llama_cpp_cli.collect(tmp_path, None, dict(FA_AUTO, form=form))
    assert agent["status"] == "ok" and agent["runtime"]["flash_attn"]["resolved"] == resolved
    assert agent["load"]["effective_params"]["flash_attn"] == resolved


def test_llama_completion_records_what_its_log_says(tmp_path):
    block, _ = block_of("common_perf_print", "phone", ".")
    head = "0.00.011.571 I system_info: n_threads = 3 (n_threads_batch = 3) / 8 | CPU : NEON = 1 |\n"
    head += "0.00.011.641 I generate: n_ctx = 4096, n_batch = 2048, n_predict = 128, n_keep = 1\n"
    write_runs(tmp_path, [head + block] * 4)
    case = dict(CASE, params={"n_batch": 2048})
    fa = dict(FA_AUTO, form="on|off")
    agent = llama_cpp_cli.collect_completion(tmp_path, case, None, fa)
    eff = agent["load"]["effective_params"]
    assert agent["status"] == "ok" and (eff["threads"], eff["threads_batch"], eff["n_ctx"]) == (3, 3, 4096)
    assert eff["flash_attn"] is None and "-lv 4" in eff["unknown"]["flash_attn"]
    assert "threads" in eff["defaults"] and "n_batch" not in eff["defaults"]
    write_runs(tmp_path, [head + V_LOG["on"] + block] * 4)  # a build that logs libllama's lines at its default
    agent = llama_cpp_cli.collect_completion(tmp_path, case, None, dict(FA_AUTO))
    assert agent["load"]["effective_params"]["flash_attn"] == "on" == agent["runtime"]["flash_attn"]["resolved"]
