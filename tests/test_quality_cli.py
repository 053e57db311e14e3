"""Quality on a phone (runtime llama_cpp_cli): perplexity and KL divergence through the phone's own
llama-perplexity (real llama.cpp, run by the stand-in phone of tests/lab/adbd.py over Debian's real adb), and
the parser of what llama-perplexity prints, tested by kind on generated variants of each documented form
(llama.cpp's tools/perplexity/perplexity.cpp, current and early 2024)."""

from __future__ import annotations

import json
import math
import random

import pytest
from conftest import run_melt
from test_adb import BIN, adbd, phone  # noqa: F401 - the stand-in phone's fixtures
from tiny_models import write_tiny_gguf

from melt.runtimes.llama_cpp_cli_quality import ATTEMPTS, write_tasks
from melt.runtimes.llama_perplexity_output import (
    PerplexityOutputError,
    chunk_means,
    parse_kl_divergence,
    parse_multiple_choice,
    parse_perplexity,
)

# --- the parser, by kind -----------------------------------------------------------------------------------


def _running(values: list[float]) -> str:
    return "".join(f"[{i}]{v:.4f}," for i, v in enumerate(values, start=1))


@pytest.mark.parametrize("seed", range(6))
def test_perplexity_final_estimate_and_running_values(seed):
    rng = random.Random(seed)
    running = [rng.uniform(1.5, 5e5) for _ in range(rng.randint(1, 20))]
    final, err = running[-1], rng.uniform(0.001, 100)
    glued = rng.random() < 0.5  # the final line can follow the ETA on the same line (llama.cpp's async log)
    text = (
        f"perplexity: calculating perplexity over {len(running)} chunks, n_ctx=64\n"
        f"perplexity: 0.01 seconds per pass - ETA {'' if glued else chr(10)}"
        f"0.00.055.816 I Final estimate: PPL = {final:.4f} +/- {err:.5f}\n"
        f"0.00 minutes\n{_running(running)}\n"
    )
    out = parse_perplexity(text)
    assert out["ppl"] == pytest.approx(round(final, 4)) and out["ppl_stderr"] == pytest.approx(round(err, 5))
    assert out["n_chunks"] == len(running) and out["source"] == "final estimate"
    assert out["running"] == pytest.approx([round(v, 4) for v in running])


def test_perplexity_without_a_final_line_is_the_last_running_value():
    """Builds before late 2023 print no final estimate; a log that lost its last line (issue 22142) neither."""
    out = parse_perplexity("0.00 minutes\n[1]9.1234,[2]8.5000,[3]8.7500,\n")
    assert out["ppl"] == 8.75 and out["ppl_stderr"] is None and "last running value" in out["source"]


@pytest.mark.parametrize("text", ["", "llama_model_load: error loading model\nmain: error: unable to load model\n"])
def test_no_perplexity_read_is_a_failure_with_the_lines(text):
    with pytest.raises(PerplexityOutputError) as e:
        parse_perplexity(text)
    assert "no perplexity" in str(e.value) and (text.strip().splitlines() or ["nothing"])[-1] in str(e.value)


CURRENT_ROW = (  # perplexity.cpp's kl_divergence(), current builds
    "{i:4d}    {ppl:9.4f} ± {pu:9.4f}    {lr:10.5f} ± {lru:10.5f}    {kl:10.5f} ± {klu:10.5f}"
    "    {dp:6.3f} ± {dpu:6.3f} %    {top:6.3f} ± {topu:6.3f} %"
)
EARLY_ROW = "{i:4d}    {ppl:10.4f}    {lr:10.5f} ± {lru:10.5f}    {kl:10.5f} ± {klu:10.5f}    {topf:.5f} ± {topfu:.5f}"
CURRENT_HEAD = (
    "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS  "
    + ("          Same top p")
)


def _kl_text(rng, form: str, n: int, stats: bool) -> tuple[str, list[dict], dict]:
    rows, text = [], []
    if form == "current":
        text.append(CURRENT_HEAD)
    else:
        text.append("chunk        PPL          ln(PPL(Q)/PPL(base))          KL-Divergence           Same top")
    for i in range(1, n + 1):
        v = {"i": i, "ppl": rng.uniform(2, 900), "pu": rng.uniform(0, 9), "lr": rng.uniform(-0.1, 1),
             "lru": 0.01, "kl": rng.uniform(0, 2), "klu": 0.001, "dp": 0.1, "dpu": 0.01,
             "top": rng.uniform(50, 100), "topu": 0.1}  # fmt: skip
        v["topf"], v["topfu"] = v["top"] / 100, v["topu"] / 100
        rows.append(v)
        text.append((CURRENT_ROW if form == "current" else EARLY_ROW).format(**v))
    figures = {"kld_mean": rng.uniform(0, 2), "kld_p99": rng.uniform(2, 9), "kld_max": rng.uniform(9, 20),
               "ppl": rng.uniform(2, 900), "top1": rng.uniform(50, 100)}  # fmt: skip
    if stats and form == "current":
        text += [
            "", "====== Perplexity statistics ======",
            f"Mean PPL(Q)                   : {figures['ppl']:10.6f} ± {1.5:10.6f}",
            f"Mean PPL(base)                : {100:10.6f} ± {1:10.6f}",
            f"Mean PPL(Q)/PPL(base)         : {1.25:10.6f} ± {0.01:10.6f}",
            "", "====== KL divergence statistics ======",
            f"Mean    KLD: {figures['kld_mean']:10.6f} ± {0.0001:10.6f}",
            f"Maximum KLD: {figures['kld_max']:10.6f}",
            f"99.9%   KLD: {figures['kld_max'] - 0.1:10.6f}",
            f"99.0%   KLD: {figures['kld_p99']:10.6f}",
            f"Median  KLD: {0.01:10.6f}",
            f" 1.0%   KLD: {0.0:10.6f}",
            f"Same top p: {figures['top1']:6.3f} ± {0.1:5.3f} %",
        ]  # fmt: skip
    elif stats:
        text += [
            "===== KL-divergence statistics",
            f"Average: {figures['kld_mean']:10.6f} ±{0.0001:10.6f}",
            f"Median : {0.01:10.6f}",
            f"Maximum: {figures['kld_max']:10.6f}",
            f"KLD_99 : {figures['kld_p99']:10.6f}",
            f"KLD_95 : {1.0:10.6f}",
            f"Minimum: {0.0:10.6f}",
        ]  # fmt: skip
    return "\n".join(text) + "\n", rows, figures


@pytest.mark.parametrize("form", ["current", "early"])
@pytest.mark.parametrize("stats", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_kl_divergence_by_form(form, stats, seed):
    rng = random.Random(seed * 7 + (form == "early") + 2 * stats)
    text, rows, figures = _kl_text(rng, form, rng.randint(1, 12), stats)
    out = parse_kl_divergence(text)
    assert [c["chunk"] for c in out["chunks"]] == [r["i"] for r in rows] and not out["unparsed"]
    assert [c["kld_mean"] for c in out["chunks"]] == pytest.approx([round(r["kl"], 5) for r in rows], abs=1e-5)
    assert [c["top1_agree_pct"] for c in out["chunks"]] == pytest.approx([r["top"] for r in rows], abs=2e-3)
    if stats:
        assert out["kld_mean"] == pytest.approx(figures["kld_mean"], abs=1e-6)
        assert out["kld_p99"] == pytest.approx(figures["kld_p99"], abs=1e-6)
        assert out["kld_max"] == pytest.approx(figures["kld_max"], abs=1e-6)
        if form == "current":
            assert out["ppl"] == pytest.approx(figures["ppl"], abs=1e-6) and out["ppl_ratio_tool"] == 1.25
            assert out["top1_agree_pct"] == pytest.approx(figures["top1"], abs=1e-3)
    if not stats:  # under 100 scored tokens llama-perplexity prints no statistics: the last row's running values
        assert out["kld_mean"] == pytest.approx(round(rows[-1]["kl"], 5), abs=1e-5)
        assert out["kld_p99"] is None and "100 scored tokens" in out["missing"]["kld_p99"]
        assert "last chunk row" in out["missing"]["kld_mean_source"]


def test_a_kl_row_of_an_unknown_shape_is_skipped_and_listed():
    text = "   1    5.0000 ± 0.1000    0.10000 ± 0.01000    0.20000 ± 0.00100    99.000 ± 0.100 %\n"
    text += "   2    5.1000 ± 0.1000    0.10000 ± 0.01000    0.30000 ± 0.00100    0.100 ± 0.010 %    98.000 ± 0.100 %\n"
    out = parse_kl_divergence(text)
    assert [c["chunk"] for c in out["chunks"]] == [2] and out["unparsed"] == [text.splitlines()[0].strip()]


def test_no_kl_read_is_a_failure():
    with pytest.raises(PerplexityOutputError, match="no KL divergence"):
        parse_kl_divergence("kl_divergence: failed to open kld_base.bin\n")


def test_chunk_means_undo_running_means():
    rng = random.Random(3)
    nll = [rng.uniform(0.5, 12) for _ in range(16)]
    running = [math.exp(sum(nll[: k + 1]) / (k + 1)) for k in range(16)]
    assert chunk_means(running, log=True) == pytest.approx(nll, rel=1e-9)
    kl = [rng.uniform(0, 0.1) for _ in range(5)]
    assert chunk_means([sum(kl[: k + 1]) / (k + 1) for k in range(5)], log=False) == pytest.approx(kl, abs=1e-12)


# --- on the lab's phone -------------------------------------------------------------------------------------

MODEL = """  - id: {id}
    runtime: llama_cpp_cli
    source: {{path: {file}}}
    workload: {{prompt_tokens: [16], n_gen: 4}}
    params: {{threads: 1}}
    quality: {{perplexity: {{n_ctx: 64, max_chunks: 4}}{ref}}}
"""


def run_whole(cmd: list[str], parse) -> dict:
    """Run llama-perplexity here and parse it, again (as many runs as the phone's script allows) when its log
    lost its tail at exit (llama.cpp issue 22142: the parsers refuse such an output; under load 3 runs in a row
    did)."""
    import subprocess

    for attempt in range(ATTEMPTS):
        done = subprocess.run(cmd, capture_output=True, text=True, env={"LC_ALL": "C"})
        try:
            return parse(done.stdout + done.stderr)
        except PerplexityOutputError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-quality")
    return write_tiny_gguf(folder / "f32.gguf"), write_tiny_gguf(folder / "q8.gguf", weights="q8_0")


def test_perplexity_and_kl_divergence_on_a_phone(phone, tiny_pair, tmp_path, llama_bench_bin):  # noqa: F811
    """F32 against itself: KL 0 (within llama.cpp's 16-bit storage of the base), top-1 agreement 100%, PPL ratio 1;
    Q8_0 of the same weights against F32: a small positive KL. The phone's perplexity is llama-perplexity's own."""
    home, profile = phone
    bin_dir = home / BIN.lstrip("/")
    for tool in ("llama-bench", "llama-perplexity"):
        (bin_dir / tool).unlink(missing_ok=True)
        (bin_dir / tool).symlink_to(llama_bench_bin.parent / tool)
    for src in tiny_pair:
        (tmp_path / src.name).symlink_to(src)
    # q8 is both a case with a reference and the reference of q8-again: the file it is handed and the one it
    # writes must not be the same
    models = [
        ("f32", "f32.gguf", ", choices: {limit: 10}"),
        ("f32-again", "f32.gguf", ", reference: f32"),
        ("q8", "q8.gguf", ", reference: f32"),
        ("q8-again", "q8.gguf", ", reference: q8"),
    ]
    body = "name: cliq\nmodels:\n" + "".join(MODEL.format(id=i, file=f, ref=r) for i, f, r in models)
    body += "protocol: {warmup: 0, repetitions: 2}\ntelemetry: {interval_ms: 100, idle_s: 0.2}\n"
    (tmp_path / "r.yaml").write_text(body)
    proc = run_melt("run", tmp_path / "r.yaml", "-d", profile, "--results", tmp_path / "r", "--run-id", "q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = tmp_path / "r" / "q"
    summary = {}
    for case_dir in (run_dir / "cases").iterdir():
        case = json.loads((case_dir / "case.json").read_text())
        metrics = json.loads((case_dir / "metrics.json").read_text())
        summary[case["model"]] = (metrics["summary"], metrics["quality"], case_dir)
    order = json.loads((run_dir / "run.json").read_text())["cases"]
    assert next(iter(order)) == summary["f32"][2].name  # the reference ran first
    ref, again, q8 = summary["f32"], summary["f32-again"], summary["q8"]
    # the reference's perplexity is the tool's own on this text and window, run here directly
    text = ref[2] / "perplexity.txt"
    tool = str(llama_bench_bin.parent / "llama-perplexity")
    direct = run_whole([tool, "-m", str(tiny_pair[0]), "-f", str(text), "-c", "64", "--chunks", "4", "-t", "1"],
                       parse_perplexity)  # fmt: skip
    assert direct["ppl"] == pytest.approx(ref[0]["ppl"], rel=1e-6)
    assert ref[1]["perplexity"]["tokens_scored"] == 4 * (64 - 1 - 32) and len(ref[1]["perplexity"]["chunk_nll"]) == 4
    assert (ref[2] / "kld_own.bin").stat().st_size > 0 and ref[0]["kld_mean"] is None
    assert again[0]["kld_mean"] == pytest.approx(0, abs=1e-5) and again[0]["top1_agree_pct"] == 100
    assert again[0]["ppl_ratio"] == pytest.approx(1, rel=1e-5) and again[0]["ppl"] == pytest.approx(
        ref[0]["ppl"], rel=1e-5
    )
    assert 1e-4 < q8[0]["kld_mean"] < 0.05 and q8[0]["kld_p99"] >= q8[0]["kld_mean"]
    assert q8[0]["kld_mean"] > 20 * max(again[0]["kld_mean"], 1e-7)
    assert "16 bits" in q8[1]["kld"]["method"] and len(q8[1]["kld"]["chunk_kld"]) == 4
    assert not (q8[2] / "kld_base.bin").exists()  # the copy it was handed is not kept twice
    on_phone = home / "data/local/tmp/melt/runs/q"
    assert {p.name for p in on_phone.glob("*/kld_*.bin")} == set() and list(on_phone.glob("*/quality_*.out"))
    # multiple choice through llama-perplexity's own mode: melt's JSONL written as its binary task file
    mc = ref[1]["choices"]
    direct = run_whole([tool, "-m", str(tiny_pair[0]), "-f", str(ref[2] / "choices.bin"), "--multiple-choice",
                        "-t", "1"], parse_multiple_choice)  # fmt: skip
    assert mc["n"] == 10 and len(mc["hits_tok"]) == 10 and ref[0]["accuracy_pct"] is None
    assert ref[0]["accuracy_tok_pct"] == pytest.approx(100 * sum(mc["hits_tok"]) / 10)
    assert ref[0]["accuracy_tok_pct"] == pytest.approx(direct["accuracy_pct"])
    assert "per token" in mc["method"] and summary["q8"][0]["accuracy_tok_pct"] is None
    q8_again = summary["q8-again"][0]
    assert q8_again["kld_mean"] == pytest.approx(0, abs=1e-5), (summary["q8-again"][1], summary["q8"][1])
    assert q8_again["top1_agree_pct"] == 100
    assert q8_again["ppl_ratio"] == pytest.approx(1, rel=1e-5)
    # a case compared with itself through melt compare: the paired test runs over the 4 windows
    code = run_melt("compare", run_dir, run_dir)
    assert code.returncode == 0, code.stdout + code.stderr
    verdicts = json.loads((run_dir / "compare.json").read_text())["verdicts"]
    ppl = [v for v in verdicts if v["metric"] == "ppl"]
    kld = [v for v in verdicts if v["metric"] == "kld_mean"]
    assert len(ppl) == 4 and all(v["verdict"] == "not significant" for v in ppl), ppl
    assert len(kld) == 3 and all(v["verdict"] == "not significant" and "4 windows" in v["reason"] for v in kld), kld


def test_outputs_on_llama_cpp_cli_are_refused(tmp_path, tiny_pair):
    (tmp_path / "f32.gguf").symlink_to(tiny_pair[0])
    (tmp_path / "p.jsonl").write_text('{"prompt": "hello"}\n')
    body = "name: bad\nmodels:\n" + MODEL.format(id="m", file="f32.gguf", ref=", outputs: {prompts: p.jsonl}")
    (tmp_path / "r.yaml").write_text(body)
    proc = run_melt("validate", tmp_path / "r.yaml")
    assert proc.returncode == 2 and "outputs" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_a_reference_of_another_runtime_is_refused(tmp_path, tiny_pair):
    (tmp_path / "f32.gguf").symlink_to(tiny_pair[0])
    body = "name: bad\nmodels:\n" + MODEL.format(id="cli", file="f32.gguf", ref=", reference: host")
    body += ("  - id: host\n    runtime: llama_cpp\n    source: {path: f32.gguf}\n    workload: {prompt_tokens: [16], "
             "n_gen: 4}\n    quality: {perplexity: {n_ctx: 64, max_chunks: 4}}\n")  # fmt: skip
    (tmp_path / "r.yaml").write_text(body)
    proc = run_melt("validate", tmp_path / "r.yaml")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2 and "quality.reference" in out and "a llama_cpp model" in out, out


def test_an_output_that_lost_its_tail_is_a_failure_not_a_figure():
    """llama.cpp's async log can lose its last lines at exit (issue 22142): a running value after 3 of 4
    announced chunks is not the perplexity of 4, nor a KL table without its last row and statistics its mean."""
    ppl = "perplexity: calculating perplexity over 4 chunks, n_ctx=64\n[1]10.0000,[2]11.0000,[3]12.0000,"
    with pytest.raises(PerplexityOutputError, match="after 3 of the 4 chunks"):
        parse_perplexity(ppl)
    assert parse_perplexity(ppl + "[4]13.0000,")["ppl"] == 13.0
    rng = random.Random(1)
    text, rows, _ = _kl_text(rng, "current", 3, stats=False)
    with pytest.raises(PerplexityOutputError, match="after 3 of the 4 chunks"):
        parse_kl_divergence("kl_divergence: computing over 4 chunks, n_ctx=64\n" + text)
    whole = parse_kl_divergence("kl_divergence: computing over 3 chunks, n_ctx=64\n" + text)
    assert whole["kld_mean"] == pytest.approx(round(rows[-1]["kl"], 5), abs=1e-5)


def _read_tasks(data: bytes) -> list[dict]:
    """llama-perplexity's task file read back as perplexity.cpp reads it (an independent reader)."""
    import struct

    def u32(at):
        return struct.unpack_from("<I", data, at)[0], at + 4

    def text(at):
        n, at = u32(at)
        return data[at : at + n].decode(), at + n

    n, _ = u32(0)
    offsets = struct.unpack_from(f"<{n}I", data, 4)
    tasks = []
    for at in offsets:
        question, at = text(at)
        k, at = u32(at)
        answers = []
        for _ in range(k):
            a, at = text(at)
            answers.append(a)
        labels = list(struct.unpack_from(f"<{k}i", data, at))
        mc2, _ = u32(at + 4 * k)
        tasks.append({"question": question, "answers": answers, "labels": labels, "mc2": mc2})
    return tasks


@pytest.mark.parametrize("limit", [None, 1, 3])
def test_tasks_are_written_as_llama_perplexity_reads_them(tmp_path, limit):
    rows = [
        {"context": "Q: 2+2?\nA:", "choices": [" 3", " 4", " five é"], "answer": 1},
        {"context": "Die Hauptstadt ist", "choices": ["Berlin", " Bonn"], "answer": 0},
        {"context": "x", "choices": [" a", " b", " c", " d"], "answer": 3},
    ]
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    facts = write_tasks(src, tmp_path / "c.bin", limit)
    got = _read_tasks((tmp_path / "c.bin").read_bytes())
    want = rows if limit is None else rows[:limit]
    assert facts["n"] == len(got) == len(want)
    for task, row in zip(got, want, strict=True):
        assert task["question"] == row["context"] and task["mc2"] == 0
        assert [" " + a for a in task["answers"]] == [c if c.startswith(" ") else " " + c for c in row["choices"]]
        assert task["labels"] == [int(i == row["answer"]) for i in range(len(row["choices"]))]
    assert facts["spaces_added"] == (1 if limit is None or limit >= 2 else 0)


@pytest.mark.parametrize("seed", range(5))
def test_multiple_choice_rows_give_each_task_s_outcome(seed):
    rng = random.Random(seed)
    hits = [rng.random() < 0.4 for _ in range(rng.randint(1, 150))]
    rows = "".join(f"{k}\t{100 * sum(hits[:k]) / k:.8f}\n" for k in range(1, len(hits) + 1))
    text = f"multiple_choice_score: there are {len(hits)} tasks in prompt\n\ntask\tacc_norm\n{rows}\n"
    p = sum(hits) / len(hits)
    text += f"0.00.156.151 I Final result: {100 * p:.4f} +/- 1.0000\n"
    out = parse_multiple_choice(text)
    assert out["hits"] == hits and out["n"] == len(hits) and out["accuracy_pct"] == pytest.approx(100 * p, abs=1e-4)
    with pytest.raises(PerplexityOutputError, match=f"after {len(hits) - 1} of the {len(hits)} tasks"):
        if len(hits) == 1:
            raise PerplexityOutputError("after 0 of the 1 tasks")
        parse_multiple_choice(text[: text.index(f"{len(hits)}\t")])


def test_no_multiple_choice_row_is_a_failure():
    with pytest.raises(PerplexityOutputError, match="no multiple-choice result"):
        parse_multiple_choice("multiple_choice_score: no tasks\n")
