"""benchmarks/paired.py, fidelity.py and observer_cost.py: the interval, the stopping rule, the busy-machine
refusal, and both scripts end to end on the tiny GGUF against the real llama-bench and melt's real runtime.

The tiny model decodes in microseconds, so its ratios are noise: the end-to-end tests check the machinery
(intervals printed, the exit code the one the printed intervals call for, what each side ran with), not a
figure. The machine these tests run on may be shared: the runs that must conclude lift the busy limits."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import paired  # noqa: E402

from melt.analysis.significance import t_two_sided_p  # noqa: E402

BURN = "import time\nwhile True: pass"
QUIET = ["--max-foreign-pair", "1000", "--max-foreign-mean", "1000"]  # never busy: the machinery alone


# -- statistics ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("df", [1, 2, 4, 9, 30, 200])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_t_quantile_leaves_the_asked_two_sided_tail(df, confidence):
    q = paired.t_quantile(confidence, df)
    assert t_two_sided_p(q, df) == pytest.approx(1 - confidence, abs=1e-7)
    assert q > statistics.NormalDist().inv_cdf(0.5 + confidence / 2)  # t's tails are heavier than the normal's


def test_t_quantile_tends_to_the_normal_one():
    assert paired.t_quantile(0.95, 100_000) == pytest.approx(statistics.NormalDist().inv_cdf(0.975), abs=1e-3)


@pytest.mark.parametrize("df, confidence", [(0, 0.95), (5, 0.0), (5, 1.0)])
def test_t_quantile_refuses_impossible_arguments(df, confidence):
    with pytest.raises(ValueError):
        paired.t_quantile(confidence, df)


def test_interval_covers_the_true_ratio_95_percent_of_the_time():
    rng = random.Random(11)
    true_ratio, hits, runs = 0.98, 0, 600
    for _ in range(runs):
        n, sigma = rng.choice([3, 5, 10, 30]), rng.choice([0.01, 0.05, 0.2])
        iv = paired.ratio_interval([true_ratio * math.exp(rng.gauss(0, sigma)) for _ in range(n)])
        hits += iv.low <= true_ratio <= iv.high
    assert 0.92 <= hits / runs <= 0.98


def test_interval_is_around_the_geometric_mean_and_scales_with_the_ratios():
    rng = random.Random(3)
    ratios = [math.exp(rng.gauss(0, 0.05)) for _ in range(8)]
    iv = paired.ratio_interval(ratios)
    assert iv.ratio == pytest.approx(statistics.geometric_mean(ratios))
    assert iv.low < iv.ratio < iv.high
    assert iv.high / iv.ratio == pytest.approx(1 + iv.half_width) == pytest.approx(iv.ratio / iv.low)
    scaled = paired.ratio_interval([1.7 * r for r in ratios])
    assert (scaled.low, scaled.high) == pytest.approx((1.7 * iv.low, 1.7 * iv.high))


def test_interval_narrows_as_pairs_are_added():
    rng = random.Random(5)
    ratios = [math.exp(rng.gauss(0, 0.05)) for _ in range(200)]
    widths = [paired.ratio_interval(ratios[:n]).half_width for n in (5, 20, 80, 200)]
    assert widths == sorted(widths, reverse=True)


def test_interval_of_identical_ratios_has_no_width_and_one_ratio_has_none():
    iv = paired.ratio_interval([0.95] * 4)
    assert (iv.low, iv.ratio, iv.high, iv.half_width) == pytest.approx((0.95, 0.95, 0.95, 0.0))
    assert paired.ratio_interval([0.95]) is None


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_interval_refuses_a_ratio_that_is_not_a_positive_number(bad):
    with pytest.raises(ValueError):
        paired.ratio_interval([1.0, bad, 1.0])


@pytest.mark.parametrize(
    "low, high, verdict",
    [(0.97, 1.01, "pass"), (0.99, 1.02, "pass"), (0.95, 0.969, "fail"), (0.96, 0.98, "open"), (0.9, 0.97, "open")],
)
def test_judge_by_where_the_interval_lies(low, high, verdict):
    iv = paired.Interval(5, math.sqrt(low * high), low, high, math.sqrt(high / low) - 1, 0.95)
    assert paired.judge(iv, 0.97) == verdict
    assert paired.judge(None, 0.97) == "open"


@pytest.mark.parametrize(
    "low, high, verdict",
    [(0.97, 1.03, "pass"), (0.99, 1.02, "pass"), (0.95, 0.969, "fail"), (1.031, 1.05, "fail"),
     (1.01, 1.04, "open"), (0.96, 0.98, "open"), (0.9, 1.1, "open")],
)  # fmt: skip
def test_a_two_sided_budget_fails_above_as_below(low, high, verdict):
    iv = paired.Interval(5, math.sqrt(low * high), low, high, math.sqrt(high / low) - 1, 0.95)
    assert paired.judge(iv, 0.97, 1.03) == verdict
    assert paired.budget_text(0.97, 1.03) == "0.97..1.03" and paired.budget_text(0.99, None) == ">= 0.99"


def test_kept_output_tees_what_is_printed_under_a_header(tmp_path, capsys):
    import record

    with record.kept_output("demo", str(tmp_path), ["-p", "16"]) as path:
        print("pair 1: ratio 1.000")
    assert path.parent == tmp_path and re.fullmatch(r"demo-\d{8}T\d{6}Z\.txt", path.name)
    lines = path.read_text().splitlines()
    assert lines[0] == "# benchmarks/demo.py -p 16" and lines[2].startswith("# machine: ")
    assert lines[3:] == ["pair 1: ratio 1.000"]
    assert capsys.readouterr().out == f"pair 1: ratio 1.000\noutput kept in {path}\n"
    with record.kept_output("demo", "none") as nothing:
        print("not kept")
    assert nothing is None and len(list(tmp_path.iterdir())) == 1


# -- the loop -----------------------------------------------------------------------------------------------


def generated_pairs(center: float, sigma: float, seed: int):
    rng = random.Random(seed)

    def do_pair(index):
        r = center * math.exp(rng.gauss(0, sigma))
        return {"ratios": {"a": r, "b": r * 1.01}, "line": f"a {r:.3f}"}

    return do_pair


@pytest.mark.parametrize("center, code", [(1.0, 0), (0.9, 1), (0.97, 3)])
def test_series_concludes_from_where_the_intervals_lie(center, code):
    rule = paired.Rule(
        budget=0.97, half_width=0.01, min_pairs=4, max_pairs=60, max_foreign_pair=1e3, max_foreign_mean=1e3
    )
    lines = []
    series = paired.run_series(generated_pairs(center, 0.005, 7), ["a", "b"], ["a"], rule, lines.append)
    iv = series.intervals["a"]
    assert series.exit_code == code
    assert series.verdicts == {"a": paired.judge(iv, 0.97)}  # "b" is printed, not judged
    assert len(lines) == len(series.pairs) >= 4
    assert series.stopped.startswith("every judged interval")
    assert iv.half_width <= 0.01
    if code == 3:
        assert "lies across the budget" in series.reasons[0]


def test_series_stops_at_the_pair_cap_when_too_noisy():
    rule = paired.Rule(
        budget=0.97, half_width=0.001, min_pairs=3, max_pairs=7, max_foreign_pair=1e3, max_foreign_mean=1e3
    )
    series = paired.run_series(generated_pairs(1.0, 0.3, 1), ["a"], ["a"], rule, lambda _: None)
    assert len(series.pairs) == 7 and series.stopped == "max pairs (7) reached"
    assert series.exit_code == {"pass": 0, "fail": 1, "open": 3}[series.verdicts["a"]]


def idle_pairs_beside_a_burner(rule):
    burner = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        time.sleep(0.3)  # it is burning before the first pair starts

        def do_pair(index):
            time.sleep(0.4)  # this process idles: whatever the machine does is someone else's
            return {"ratios": {"a": 1.0 + 0.001 * index}, "line": "idle"}

        return paired.run_series(do_pair, ["a"], ["a"], rule, lambda _: None)
    finally:
        burner.kill()
        burner.wait()


def test_series_refuses_to_conclude_beside_a_cpu_burner():
    series = idle_pairs_beside_a_burner(paired.Rule(budget=0.97, min_pairs=3, max_pairs=5))
    assert series.exit_code == 3
    assert series.stopped == "busy" and len(series.pairs) == 1  # no point measuring on
    assert re.search(r"machine busy: other processes used \d+% of a core during pair 1", series.busy)
    assert series.reasons == [f"not concluded: {series.busy}"]


def test_series_stops_once_the_mean_over_min_pairs_is_busy():
    rule = paired.Rule(budget=0.97, min_pairs=2, max_pairs=6, max_foreign_pair=1000, max_foreign_mean=0.05)
    series = idle_pairs_beside_a_burner(rule)
    assert series.exit_code == 3 and series.stopped == "busy" and len(series.pairs) == 2
    assert re.search(r"other processes used \d+% of a core on average during the 2 pairs", series.busy)


def test_series_mean_limit_catches_load_that_no_single_pair_shows():
    pairs = iter([0.1, 0.1, 0.1, 0.1])
    rule = paired.Rule(budget=0.97, min_pairs=4, max_pairs=4, max_foreign_pair=0.2, max_foreign_mean=0.05)
    series = paired.Series(
        pairs=[{"index": i, "cpu": {"wall_s": 1.0, "foreign_s": f, "foreign_cores": f}} for i, f in enumerate(pairs)]
    )
    assert "10% of a core on average during the 4 pairs" in paired._busy_reason(series, rule)


@pytest.mark.parametrize("codes, overall", [([0, 0], 0), ([0, 3], 3), ([3, 1], 1), ([1, 0], 1), ([0], 0), ([3], 3)])
def test_a_grid_fails_on_any_failure_then_stays_open_on_any_open(codes, overall):
    assert paired.overall_exit(codes) == overall


def test_rule_names_the_setting_out_of_range():
    with pytest.raises(ValueError, match="min-pairs"):
        paired.Rule(budget=0.97, min_pairs=1).check()
    with pytest.raises(ValueError, match="half-width"):
        paired.Rule(budget=0.97, half_width=0).check()


# -- the CPU meter ------------------------------------------------------------------------------------------


def test_meter_counts_reaped_children_as_own():
    meter = paired.CpuMeter()
    snap = meter.start()
    subprocess.run([sys.executable, "-c", "import time\nwhile time.process_time() < 0.5: pass"], check=True)
    cpu = meter.stop(snap)
    assert cpu["own_s"] >= 0.45
    assert cpu["foreign_s"] == pytest.approx(max(0.0, cpu["busy_s"] - cpu["own_s"]) + (cpu["steal_s"] or 0.0))


def test_meter_counts_a_process_outside_the_benchmark_as_foreign():
    import psutil

    burner = subprocess.Popen([sys.executable, "-c", BURN])  # not reaped until after stop(): not ours yet
    try:
        time.sleep(0.2)
        watched = psutil.Process(burner.pid)
        before = sum(watched.cpu_times()[:2])
        meter = paired.CpuMeter()
        snap = meter.start()
        time.sleep(1.0)
        cpu = meter.stop(snap)
        burned = sum(watched.cpu_times()[:2]) - before
    finally:
        burner.kill()
        burner.wait()
    assert burned > 0.2
    assert cpu["foreign_s"] >= 0.8 * burned  # /proc/stat ticks vs the process's own: a little slack
    assert cpu["foreign_cores"] == pytest.approx(cpu["foreign_s"] / cpu["wall_s"])


def test_machine_line_names_the_cpu_and_its_cores():
    info = paired.machine_info()
    line = paired.machine_line(info)
    assert info["logical_cores"] >= 1 and f"{info['logical_cores']} logical cores" in line
    assert line.startswith("machine: ") and "governor: " in line and "ISA: " in line


# -- the scripts end to end -----------------------------------------------------------------------------------


def script(name: str, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run a benchmark script; its output is kept nowhere unless the test passes --out."""
    keep = [] if "--out" in args else ["--out", "none"]
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *map(str, args), *keep],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


INTERVAL = re.compile(r"^(?P<name>.+?) ratio (?P<r>[\d.]+) \[(?P<lo>[\d.]+), (?P<hi>[\d.]+)\] \(\+-", re.MULTILINE)


def printed_intervals(out: str) -> dict[str, tuple[float, float]]:
    return {m["name"]: (float(m["lo"]), float(m["hi"])) for m in INTERVAL.finditer(out)}


def expected_exit(intervals: list[tuple[float, float]], budget: float, upper: float = math.inf) -> int:
    if any(hi < budget or lo > upper for lo, hi in intervals):
        return 1
    return 0 if all(lo >= budget and hi <= upper for lo, hi in intervals) else 3


def test_fidelity_grid_prints_intervals_and_exits_as_they_say(models, llama_bench_bin, tmp_path):
    out = tmp_path / "f.json"
    args = ["--model", models["gguf"], "--bin", llama_bench_bin, "-p", 16, 24, "-t", 1, "-n", 8]
    kept = tmp_path / "outputs"
    proc = script("fidelity.py", *args, "--min-pairs", 3, "--max-pairs", 3, *QUIET, "--json", out, "--out", kept)
    assert proc.returncode in (0, 1, 3), proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert [(c["prompt"], c["threads"]) for c in data["combinations"]] == [(16, 1), (24, 1)]
    sections = proc.stdout.split("== prompt ")[1:]
    assert len(sections) == 2
    codes = []
    for section, combo in zip(sections, data["combinations"], strict=True):
        printed = printed_intervals(section)
        assert set(printed) == {"prefill", "decode"}
        for name, (lo, hi) in printed.items():
            assert (lo, hi) == pytest.approx(
                (combo["intervals"][name]["low"], combo["intervals"][name]["high"]), abs=6e-4
            )
        assert combo["exit_code"] == expected_exit(list(printed.values()), 0.97, 1.03)  # within 3%, both ways
        assert (
            f"verdict: {['PASS', 'FAIL', '', 'NOT CONCLUDED'][combo['exit_code']]} (exit {combo['exit_code']})"
            in section
        )
        assert len(combo["pairs"]) == 3
        for i, pair in enumerate(combo["pairs"]):  # melt's trial between llama-bench's two, which alternate
            spans = pair["figures"]["spans_s"]
            first, last = ("pp", "tg") if i % 2 == 0 else ("tg", "pp")
            assert spans[first][1] <= spans["melt_warmup"][0] <= spans["melt_warmup"][1] <= spans["melt"][0], spans
            assert spans["melt"][0] <= spans["melt"][1] <= spans[last][0], spans  # melt measured warm, between
            assert pair["figures"]["order"] == f"{first}, melt, {last}" and f"pair {i + 1}: {first}, melt" in section
        codes.append(combo["exit_code"])
        # like with like: what each side ran with is printed, and it is the same
        assert "resolved flash attention 'off'" in section and "its records say flash attention off" in section
        eff = combo["melt_effective_params"]
        assert f"-b {eff['n_batch']} -ub {eff['n_ubatch']}" in section and eff["threads"] == 1
    assert proc.returncode == paired.overall_exit(codes)
    assert proc.stdout.startswith("machine: ")
    # what it printed is kept, headed by the command, the commit and the machine
    (path,) = kept.glob("fidelity-*.txt")
    head, body = path.read_text().split("\n", 3)[:3], path.read_text().split("\n", 3)[3]
    assert head[0].startswith("# benchmarks/fidelity.py --model ") and "--json" in head[0]
    assert re.match(r"# started \d{8}T\d{6}Z; melt commit [0-9a-f]{12}", head[1])
    assert head[2].startswith("# machine: ")
    assert proc.stdout == body + f"output kept in {path}\n"


def test_fidelity_asks_both_sides_for_flash_attention_alike(models, llama_bench_bin):
    proc = script(
        "fidelity.py", "--model", models["gguf"], "--bin", llama_bench_bin, "-p", 16, "-t", 1, "-n", 8,
        "--flash-attn", "on", "--min-pairs", 2, "--max-pairs", 2, *QUIET,
    )  # fmt: skip
    printed = printed_intervals(proc.stdout)
    assert set(printed) == {"prefill", "decode"}, proc.stdout + proc.stderr
    assert proc.returncode == expected_exit(list(printed.values()), 0.97, 1.03), proc.stdout + proc.stderr
    assert (
        "resolved flash attention 'on'" in proc.stdout and "-fa on -> its records say flash attention on" in proc.stdout
    )


def test_fidelity_refuses_to_conclude_beside_a_competing_process(models, llama_bench_bin):
    burners = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(2)]
    try:
        time.sleep(0.3)
        proc = script("fidelity.py", "--model", models["gguf"], "--bin", llama_bench_bin, "-p", 16, "-t", 1, "-n", 8)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert re.search(r"not concluded: machine busy: other processes used \d+% of a core", proc.stdout)
    assert "verdict: NOT CONCLUDED (exit 3)" in proc.stdout


def test_llama_bench_that_ran_otherwise_than_asked_is_an_error(models, llama_bench_bin):
    import fidelity

    bench = fidelity.Bench(str(llama_bench_bin), str(models["gguf"]), 1, ["-fa", "on"], 32, 32)
    ran = bench.pp(16)
    assert fidelity.check_bench_record(ran, "on", 32, 32, 1) == "on"
    with pytest.raises(fidelity.LlamaBenchError, match="flash_attn"):
        fidelity.check_bench_record(ran, "off", 32, 32, 1)
    with pytest.raises(fidelity.LlamaBenchError, match="n_batch"):
        fidelity.check_bench_record(ran, "on", 64, 32, 1)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--model", "/nonexistent.gguf"], "--model /nonexistent.gguf: no such file"),
        (["--bin", "/nonexistent/llama-bench"], "--bin /nonexistent/llama-bench: no executable llama-bench"),
        (["--min-pairs", "1"], "min-pairs"),
        (["-p", "0"], "must be >= 1"),
    ],
)
def test_fidelity_bad_input_exits_2_saying_what(args, says, models, llama_bench_bin):
    base = {"--model": str(models["gguf"]), "--bin": str(llama_bench_bin)}
    for key in ("--model", "--bin"):
        if key not in args:
            args = [key, base[key], *args]
    proc = script("fidelity.py", *args)
    assert proc.returncode == 2 and says in proc.stderr and proc.stdout == ""


def test_observer_cost_pairs_every_setting_and_judges_10_hz(models, tmp_path):
    out = tmp_path / "o.json"
    proc = script(
        "observer_cost.py", "--model", models["gguf"], "-p", 16, "-t", 1, "-n", 16,
        "--min-pairs", 3, "--max-pairs", 3, *QUIET, "--json", out,
    )  # fmt: skip
    assert proc.returncode in (0, 1, 3), proc.stdout + proc.stderr
    printed = printed_intervals(proc.stdout)
    assert set(printed) == {"10 Hz / off", "100 Hz / off"}
    assert proc.returncode == expected_exit([printed["10 Hz / off"]], 0.99)  # 100 Hz is printed, not judged
    (combo,) = json.loads(out.read_text())["combinations"]
    orders = [tuple(p["figures"]["order"]) for p in combo["pairs"]]
    assert len(set(orders)) == 3 and all(sorted(o) == sorted(["off", "10 Hz", "100 Hz"]) for o in orders)
    for p in combo["pairs"]:  # the sampler really ran for the sampled trials, and only for them
        rows = p["figures"]["sampler_rows"]
        assert rows["off"] is None and rows["10 Hz"] >= 1 and rows["100 Hz"] >= 1


def test_observer_cost_bad_input_exits_2():
    proc = script("observer_cost.py", "--model", "/nonexistent.gguf")
    assert proc.returncode == 2 and "--model /nonexistent.gguf: no such file" in proc.stderr
