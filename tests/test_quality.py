"""Quality next to speed (recipe `quality`): perplexity measured by the agent after the speed trials, with the
same model and params, as llama.cpp's own llama-perplexity scores it, on the real tool built from the same
llama.cpp sources."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess

import pytest
from conftest import run_melt, write_recipe

N_CTX, CHUNKS, N_OUT = 64, 4, 8
PROMPTS = ["Once upon a time", "The weather today is", "1, 2, 3,"]
TASKS = [  # a context ending in a space (lm-evaluation-harness moves it to the choice), two to four choices
    {"context": "The cat sat on the", "choices": [" mat", " moon", " idea"], "answer": 0},
    {"context": "Question: what is frozen water?\nAnswer: ", "choices": ["ice", "steam"], "answer": 0},
    {"context": "One, two, three,", "choices": [" four", " seven", " many more words here", " x"], "answer": 0},
    {"context": "Paris is in", "choices": [" France", " Japan"], "answer": 1},
    {"context": "", "choices": ["a", "b"], "answer": 1},
]


def llama(model_id: str, quality: str = "", path: str = "tiny.gguf", params: str = "{threads: 1}") -> str:
    """One llama_cpp model of a test recipe (YAML), with its quality block (flow style) where given."""
    q = f"\n    quality: {quality}" if quality else ""
    return (f"  - id: {model_id}\n    runtime: llama_cpp\n    source: {{path: {path}}}\n"
            f"    workload: {{prompt_tokens: 16, n_gen: 4}}\n    params: {params}{q}\n")  # fmt: skip


def recipe(name: str, *models: str, repetitions: int = 2) -> str:
    return (f"name: {name}\nmodels:\n{''.join(models)}protocol: {{warmup: 0, repetitions: {repetitions}, "
            "min_duration_s: 0}\ntelemetry: {interval_ms: 0, idle_s: 0}\n")  # fmt: skip


PPL = f"perplexity: {{text: eval.txt, n_ctx: {N_CTX}, max_chunks: {CHUNKS}}}"


RECIPE = recipe(
    "quality",
    llama("tiny", f"{{{PPL}, choices: {{file: mc.jsonl}}, outputs: {{prompts: out.jsonl, n_gen: {N_OUT}}}}}"),
    llama("smoke", "{choices: {limit: 5}}"),
    llama("short-text", f"{{perplexity: {{text: short.txt, n_ctx: {N_CTX}}}}}"),
    llama("none"),
)


@pytest.fixture(scope="module")
def run(tmp_path_factory, models):
    from melt.runtimes.llama_cpp import prompt_text

    folder = tmp_path_factory.mktemp("quality")
    (folder / "tiny.gguf").symlink_to(models["gguf"])
    (folder / "eval.txt").write_text(prompt_text())
    (folder / "short.txt").write_text("Too short to score.")
    (folder / "mc.jsonl").write_text("".join(json.dumps(t) + "\n" for t in TASKS))
    (folder / "out.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    proc = run_melt("run", write_recipe(folder, RECIPE), "--results", folder / "results", "--run-id", "q", cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = folder / "results" / "q"
    with (run_dir / "summary.csv").open(newline="") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    out = {"folder": folder, "rows": rows}
    for model, row in rows.items():
        out[model] = json.loads((run_dir / "cases" / row["case_id"] / "metrics.json").read_text())
    return out


def llama_perplexity(binary, model, text_file, threads: int = 1) -> tuple[float, float, str]:
    """llama-perplexity's final estimate (PPL, its +/-) on the same text, context and chunks. llama.cpp's log
    thread can lose its last lines at exit on a busy machine (common/log.cpp, llama.cpp issue 22142): a run
    without its estimate is run again, as many times as melt's phone script allows."""
    from melt.runtimes.llama_cpp_cli_quality import ATTEMPTS

    for _ in range(ATTEMPTS):
        proc = subprocess.run(
            [str(binary), "-m", str(model), "-f", str(text_file), "-c", str(N_CTX), "-b", str(N_CTX),
             "--chunks", str(CHUNKS), "-t", str(threads)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        m = re.search(r"Final estimate: PPL = ([\d.]+) \+/- ([\d.]+)", proc.stdout + proc.stderr)
        if m:
            return float(m[1]), float(m[2]), proc.stdout + proc.stderr
    raise AssertionError("llama-perplexity lost its final estimate three times: " + proc.stderr[-2000:])


def test_perplexity_agrees_with_llama_perplexity(run, models, llama_bench_bin):
    measured = run["tiny"]["quality"]["perplexity"]
    ppl, stderr, said = llama_perplexity(llama_bench_bin.parent / "llama-perplexity", models["gguf"],
                                         run["folder"] / "eval.txt")  # fmt: skip
    # DESIGN.md's budget is 0.5%; the same arithmetic on the same logits agrees to float rounding, and a
    # window scored from one position off, or without its BOS, moves it by more than this
    assert measured["ppl"] == pytest.approx(ppl, rel=1e-5)
    assert measured["ppl_stderr"] == pytest.approx(stderr, rel=1e-4)
    (chunks,) = re.findall(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+)", said)
    assert (measured["n_chunks"], measured["n_ctx"]) == (int(chunks[0]), int(chunks[1])) == (CHUNKS, N_CTX)
    # the second half of each window is scored, the last position predicting past it
    assert measured["tokens_scored"] == CHUNKS * (N_CTX - N_CTX // 2 - 1)
    assert run["tiny"]["summary"]["ppl"] == measured["ppl"] and float(run["rows"]["tiny"]["ppl"]) > 1


def test_the_speed_figures_stand_beside_quality(run):
    for model in ("tiny", "none", "short-text"):
        assert run[model]["summary"]["decode_tok_s"] > 0 and run[model]["summary"]["validity"] in ("valid", "semivalid")


def test_a_quality_figure_that_cannot_be_measured_is_empty_with_the_reason(run):
    assert run["short-text"]["summary"]["ppl"] is None and run["rows"]["short-text"]["ppl"] == ""
    assert re.search(rf"needs at least {2 * N_CTX} tokens for n_ctx {N_CTX}", run["short-text"]["missing"]["ppl"])
    assert run["none"]["missing"]["ppl"] == "not measured: the recipe asks for no quality.perplexity"


def test_a_missing_text_is_refused_before_anything_runs(tmp_path, models):
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    recipe = write_recipe(tmp_path, RECIPE.replace("text: eval.txt", "text: nowhere.txt"))
    proc = run_melt("run", recipe, "--results", tmp_path / "results", cwd=tmp_path)
    assert proc.returncode == 2
    assert "models[0].quality.perplexity.text: expected a UTF-8 text file" in proc.stderr
    assert not (tmp_path / "results").exists()


def reference_loglikelihoods(model, tasks) -> list[list[float]]:
    """Each choice's log-likelihood given its context through llama-cpp-python's high-level Llama (logits of
    every position), split into context and continuation as lm-evaluation-harness's _encode_pair does."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=str(model), n_ctx=256, n_threads=1, logits_all=True, verbose=False)
    out = []
    for t in tasks:
        lls = []
        for choice in t["choices"]:
            context, continuation = t["context"], choice
            n = len(context) - len(context.rstrip())
            if n:
                context, continuation = context[:-n], context[-n:] + continuation
            whole = llm.tokenize((context + continuation).encode(), add_bos=True)
            ctx = llm.tokenize(context.encode(), add_bos=True)
            cont = whole[len(ctx) :]
            llm.reset()
            llm.eval(whole)
            logits = np.asarray(llm.scores[: len(whole)], dtype=np.float64)
            rows = logits[len(ctx) - 1 : len(whole) - 1]
            log_z = np.log(np.exp(rows - rows.max(axis=1, keepdims=True)).sum(axis=1)) + rows.max(axis=1)
            lls.append(float((rows[np.arange(len(cont)), cont] - log_z).sum()))
        out.append(lls)
    return out


def test_multiple_choice_scores_each_choice_by_its_log_likelihood(run, models):
    measured = run["tiny"]["quality"]["choices"]
    expected = reference_loglikelihoods(models["gguf"], TASKS)
    assert measured["n"] == len(TASKS)
    for item, lls, task in zip(measured["items"], expected, TASKS, strict=True):
        assert item["ll"] == pytest.approx(lls, abs=1e-3)
        assert item["pred"] == max(range(len(lls)), key=lls.__getitem__) and item["answer"] == task["answer"]
        per_char = [ll / len(c) for ll, c in zip(lls, task["choices"], strict=True)]
        assert item["pred_norm"] == max(range(len(per_char)), key=per_char.__getitem__)
    hits = [i["pred"] == i["answer"] for i in measured["items"]]
    assert run["tiny"]["summary"]["accuracy_pct"] == pytest.approx(100 * sum(hits) / len(hits))
    p = sum(hits) / len(hits)
    assert measured["accuracy_stderr_pct"] == pytest.approx(100 * (p * (1 - p) / (len(hits) - 1)) ** 0.5)
    assert run["rows"]["tiny"]["accuracy_norm_pct"] != ""


def test_the_shipped_smoke_set_runs_by_default(run):
    measured = run["smoke"]["quality"]["choices"]
    assert measured["n"] == 5 and 0 <= run["smoke"]["summary"]["accuracy_pct"] <= 100
    assert run["smoke"]["missing"]["ppl"] == "not measured: the recipe asks for no quality.perplexity"


@pytest.mark.parametrize(
    "line, why",
    [('{"context": "a", "choices": ["b"], "answer": 0}', "one choice"),
     ('{"context": "a", "choices": ["b", "c"], "answer": 2}', "answer out of range"),
     ("not json", "not JSON")],
)  # fmt: skip
def test_a_bad_task_file_is_refused_with_its_line(tmp_path, models, line, why):
    (tmp_path / "tiny.gguf").symlink_to(models["gguf"])
    (tmp_path / "eval.txt").write_text("x")
    (tmp_path / "mc.jsonl").write_text(json.dumps(TASKS[0]) + "\n" + line + "\n")
    proc = run_melt("validate", write_recipe(tmp_path, RECIPE), cwd=tmp_path)
    assert proc.returncode == 2, why
    assert "models[0].quality.choices.file: expected a JSONL file of" in proc.stderr and "mc.jsonl:2:" in proc.stderr


def reference_greedy(model, prompts, n_gen) -> list[list[int]]:
    """Greedy tokens through llama-cpp-python's high-level Llama: eval the prompt, argmax, eval it, again."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(model_path=str(model), n_ctx=128, n_threads=1, logits_all=True, verbose=False)
    out = []
    for prompt in prompts:
        llm.reset()
        llm.eval(llm.tokenize(prompt.encode(), add_bos=True))
        tokens = []
        for _ in range(n_gen):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            tokens.append(token)
            llm.eval([token])
        out.append(tokens)
    return out


def test_greedy_outputs_are_kept_as_the_model_writes_them(run, models):
    kept = run["tiny"]["quality"]["outputs"]
    assert kept["n_gen"] == N_OUT and [i["tokens"] for i in kept["items"]] == reference_greedy(
        models["gguf"], PROMPTS, N_OUT)  # fmt: skip
    assert all(isinstance(i["text"], str) and i["text"] for i in kept["items"])


OUTPUTS_ONLY = recipe("drift", llama("tiny", f"{{outputs: {{prompts: out.jsonl, n_gen: {N_OUT}}}}}"), repetitions=3)


def test_compare_says_whether_greedy_outputs_drifted(tmp_path):
    from tiny_models import write_tiny_gguf

    from melt.analysis.compare import first_divergence
    from melt.results.reader import kept_outputs, read_run

    (tmp_path / "out.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    recipe = write_recipe(tmp_path, OUTPUTS_ONLY)
    for run_id, seed in (("a", 0), ("b", 0), ("c", 1)):  # c: other weights behind the same file name
        write_tiny_gguf(tmp_path / "tiny.gguf", seed=seed)
        proc = run_melt("run", recipe, "--results", tmp_path / "results", "--run-id", run_id, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    results = tmp_path / "results"
    same = run_melt("compare", results / "a", results / "b", "--results", results)
    # its exit code also carries the speed figures' verdicts, which a shared machine can move: the outputs'
    # verdict is read from compare.json
    assert (results / "b" / "compare.json").is_file(), same.stdout + same.stderr
    (verdict,) = [v for v in json.loads((results / "b" / "compare.json").read_text())["verdicts"]
                  if v["metric"] == "outputs"]  # fmt: skip
    assert verdict["verdict"] == "not significant"
    assert verdict["reason"] == f"greedy outputs identical to the baseline's (3 prompts, {3 * N_OUT} tokens)"
    drifted = run_melt("compare", results / "a", results / "c", "--results", results)
    assert drifted.returncode == 1, drifted.stdout + drifted.stderr
    tokens = {r: kept_outputs(read_run(results / r).cases[0].metrics)[0] for r in ("a", "c")}
    p, t = first_divergence(tokens["a"], tokens["c"])
    assert f"greedy output drifted: prompt {p + 1} first differs at token {t + 1}" in drifted.stdout
    assert tokens["a"][p][:t] == tokens["c"][p][:t] and tokens["a"][p][t] != tokens["c"][p][t]


@pytest.mark.parametrize(
    "base, new, where",
    [([[1, 2, 3]], [[1, 2, 3]], None), ([[1, 2, 3]], [[1, 2, 4]], (0, 2)), ([[1], [5, 6]], [[1], [5, 7]], (1, 1)),
     ([[1, 2]], [[1, 2, 3]], (0, 2)), ([[1]], [[1], [2]], (1, 0))],
)  # fmt: skip
def test_first_divergence_by_kind(base, new, where):
    from melt.analysis.compare import first_divergence

    assert first_divergence(base, new) == where


KLD_RECIPE = recipe(
    "kld",
    llama("q8", f"{{{PPL}, reference: f32}}", path="tiny-q8.gguf"),
    llama("f32", f"{{{PPL}}}"),
    llama("self", f"{{{PPL}, reference: f32}}"),
    llama("orphan", f"{{{PPL}, reference: broken}}"),
    llama("broken", f"{{{PPL}}}", path="broken.gguf", params="{}"),
)


@pytest.fixture(scope="module")
def kld_run(tmp_path_factory, models):
    from tiny_models import write_tiny_gguf

    from melt.runtimes.llama_cpp import prompt_text

    folder = tmp_path_factory.mktemp("kld")
    (folder / "tiny.gguf").symlink_to(models["gguf"])
    write_tiny_gguf(folder / "tiny-q8.gguf", weights="q8_0")  # the same weights, quantised
    (folder / "broken.gguf").write_text("not a model")
    (folder / "eval.txt").write_text(prompt_text())
    proc = run_melt(
        "run", write_recipe(folder, KLD_RECIPE), "--results", folder / "results", "--run-id", "k", cwd=folder
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the broken reference fails; the rest runs
    run_dir = folder / "results" / "k"
    manifest = json.loads((run_dir / "run.json").read_text())
    out = {"folder": folder, "order": [e["model"] for e in manifest["cases"].values()], "manifest": manifest}
    for case_id, entry in manifest["cases"].items():
        path = run_dir / "cases" / case_id / "metrics.json"
        out[entry["model"]] = json.loads(path.read_text()) if path.is_file() else entry
    out["started"] = {e["model"]: e["started_at"] for e in manifest["cases"].values()}
    return out


def exact_kld(reference, model, text: str) -> list[float]:
    """KL(reference || model) per scored token over the full vocabulary, through llama-cpp-python's high-level
    Llama, on llama-perplexity's windows (BOS first, the second half scored)."""
    import numpy as np
    from llama_cpp import Llama

    def log_probs(path) -> list:
        llm = Llama(model_path=str(path), n_ctx=N_CTX, n_threads=1, logits_all=True, verbose=False)
        tokens = llm.tokenize(text.encode(), add_bos=True)
        rows = []
        for i in range(CHUNKS):
            window = tokens[i * N_CTX : (i + 1) * N_CTX]
            window[0] = llm.token_bos()
            llm.reset()
            llm.eval(window)
            logits = np.asarray(llm.scores[N_CTX // 2 : N_CTX - 1], dtype=np.float64)
            top = logits.max(axis=1, keepdims=True)
            rows.append(logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True)))
        return np.concatenate(rows)

    lp, lq = log_probs(reference), log_probs(model)
    return list((np.exp(lp) * (lp - lq)).sum(axis=1))


def test_references_run_first_and_a_model_against_itself_diverges_nowhere(kld_run):
    assert kld_run["order"][:2] == ["f32", "broken"]  # both references ahead of the cases that need them
    kld = kld_run["self"]["quality"]["kld"]
    assert kld["kld_mean"] == pytest.approx(0, abs=1e-6) and kld["top1_agree_pct"] == 100
    assert kld["ppl_ratio"] == pytest.approx(1, abs=1e-9) and kld["tokens"] == CHUNKS * (N_CTX - N_CTX // 2 - 1)
    assert kld_run["self"]["summary"]["kld_mean"] == kld["kld_mean"]


def test_a_quantised_model_diverges_a_little_within_the_stated_bound(kld_run, models):
    kld = kld_run["q8"]["quality"]["kld"]
    exact = exact_kld(models["gguf"], kld_run["folder"] / "tiny-q8.gguf", (kld_run["folder"] / "eval.txt").read_text())
    assert 0 < kld["kld_mean"] < 0.05  # Q8_0 of the same weights: small, and not nothing
    # the top-k estimate is a lower bound of the full KL and kld_upper_mean an upper one
    assert kld["kld_mean"] <= sum(exact) / len(exact) + 1e-6 <= kld["kld_upper_mean"] + 2e-6
    assert kld["kld_mean"] == pytest.approx(sum(exact) / len(exact), rel=0.05)
    assert kld["kld_p99"] >= kld["kld_mean"] and kld["top_k"] == 128
    ppl = {m: kld_run[m]["summary"]["ppl"] for m in ("q8", "f32")}
    assert kld["ppl_ratio"] == pytest.approx(ppl["q8"] / ppl["f32"], rel=1e-9)


def test_a_reference_that_failed_leaves_the_divergence_empty_with_the_reason(kld_run):
    assert kld_run["broken"]["status"] == "failed"
    orphan = kld_run["orphan"]
    assert orphan["summary"]["ppl"] is not None and orphan["summary"]["kld_mean"] is None
    assert re.search(
        r"reference case \w+ \(broken\) kept no log-probabilities \(failed: ", orphan["missing"]["kld_mean"]
    )


@pytest.mark.parametrize(
    "change, found",
    [("reference: f32\n  - id: f32", "'nowhere' (no such model)"), ("reference: f32", "'q8' (itself)")],
)
def test_a_reference_that_is_not_there_is_refused_at_plan_time(tmp_path, models, change, found):
    (tmp_path / "eval.txt").write_text("x")
    body = KLD_RECIPE.replace("reference: f32}", "reference: nowhere}", 1)
    if "itself" in found:
        body = KLD_RECIPE.replace("reference: f32}", "reference: q8}", 1)
    proc = run_melt("validate", write_recipe(tmp_path, body), cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        "models[0].quality.reference: expected the id of another llama_cpp model" in proc.stderr
        and found in proc.stderr
    )


QUALITY_ONLY = recipe("judged", llama("tiny", f"{{{PPL}, choices: {{limit: 24}}}}"), repetitions=3)


def test_compare_judges_quality_unit_by_unit(tmp_path):
    """The same model twice: quality unchanged, whatever the speed did. Other weights behind the same file:
    perplexity and accuracy judged by paired tests over the same tokens and items, the direction as measured."""
    from tiny_models import write_tiny_gguf

    from melt.analysis.significance import mcnemar_p, paired_p
    from melt.results.reader import paired_units, read_run
    from melt.runtimes.llama_cpp import prompt_text

    (tmp_path / "eval.txt").write_text(prompt_text())
    recipe = write_recipe(tmp_path, QUALITY_ONLY)
    results = tmp_path / "results"
    for run_id, seed in (("a", 0), ("b", 0), ("c", 3)):
        write_tiny_gguf(tmp_path / "tiny.gguf", seed=seed)
        proc = run_melt("run", recipe, "--results", results, "--run-id", run_id, cwd=tmp_path)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def verdicts(new: str) -> dict:
        run_melt("compare", results / "a", results / new, "--results", results)
        data = json.loads((results / new / "compare.json").read_text())
        return {v["metric"]: v for v in data["verdicts"] if v["metric"] in ("ppl", "accuracy_pct", "accuracy_norm_pct")}

    same = verdicts("b")
    assert {m: v["verdict"] for m, v in same.items()} == dict.fromkeys(same, "not significant") and len(same) == 3
    assert same["ppl"]["change_pct"] == 0 and same["ppl"]["p_value"] == 1
    other = verdicts("c")
    units = {r: paired_units(read_run(results / r).cases[0].metrics) for r in ("a", "c")}
    ppl = {r: math.exp(sum(u["ppl"]) / len(u["ppl"])) for r, u in units.items()}
    v = other["ppl"]
    assert v["change_pct"] == pytest.approx((ppl["c"] / ppl["a"] - 1) * 100, rel=1e-6)
    if abs(v["change_pct"]) > 5:  # beyond the threshold: judged, and the reason names the test
        assert f"a paired test over the {CHUNKS * (N_CTX - N_CTX // 2 - 1)} tokens both runs scored" in v["reason"]
    p_raw = paired_p(units["a"]["ppl"], units["c"]["ppl"])
    assert v["p_value"] >= p_raw  # Holm only raises p
    if abs(v["change_pct"]) > 5 and v["p_value"] < 0.05:
        assert v["verdict"] == ("worse" if ppl["c"] > ppl["a"] else "better")
    else:
        assert v["verdict"] == "not significant"
    acc = other["accuracy_pct"]
    assert mcnemar_p(units["a"]["accuracy_pct"], units["c"]["accuracy_pct"]) <= acc["p_value"]
    if abs(acc["change_pct"]) > 5:
        assert "a paired test over the 24 items both runs scored" in acc["reason"]
    else:
        assert acc["reason"] == f"{acc['change_pct']:+.1f}% is within ±5%" and acc["verdict"] == "not significant"


@pytest.mark.parametrize(
    "base, new, p",
    [([True] * 10, [True] * 10, 1.0), ([True] * 10, [False] * 10, 2 * 0.5**10),
     ([True, False] * 5, [False, True] * 5, 1.0)],
)  # fmt: skip
def test_mcnemar_by_kind(base, new, p):
    from melt.analysis.significance import mcnemar_p

    assert mcnemar_p(base, new) == pytest.approx(p)


def test_paired_p_by_kind():
    from melt.analysis.significance import paired_p

    assert paired_p([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 1.0
    assert paired_p([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == 0.0  # one and the same shift everywhere
    assert 0.05 < paired_p([1.0, 2.0, 3.0, 4.0], [1.1, 1.9, 3.2, 3.9]) < 1
    assert paired_p([1.0], [2.0]) is None and paired_p([1.0, 2.0], [1.0]) is None


def test_exports_carry_the_quality_columns(run):
    q = run["folder"] / "results" / "q"
    md = run_melt("results", "export", q, "--format", "md")
    header = next(line for line in md.stdout.splitlines() if line.startswith("| device"))
    assert "| perplexity |" in header and "| accuracy % |" in header
    row = next(line for line in md.stdout.splitlines() if "| tiny " in line)
    cells = dict(zip(header.split(" | "), row.split(" | "), strict=True))
    assert float(cells["perplexity"]) == pytest.approx(run["tiny"]["summary"]["ppl"], rel=1e-4)
    exported = json.loads(run_melt("results", "export", q, "--format", "json").stdout)
    tiny = next(c for c in exported["cases"] if c["model"] == "tiny")
    assert float(tiny["accuracy_pct"]) == pytest.approx(run["tiny"]["summary"]["accuracy_pct"])


def test_kl_divergence_is_judged_by_its_change_in_nats():
    """KL is 0 against itself: a change from 0 has no ratio, so it is judged by the paired test and said in
    nats; the same KL on both sides is not a change."""
    import random

    from melt.analysis.compare import compare
    from melt.results.reader import CaseData

    rng = random.Random(4)
    zero = [0.0] * 60
    moved = [abs(rng.gauss(0.3, 0.1)) for _ in range(60)]

    def case(run: str, kld: list[float]) -> CaseData:
        return CaseData(run, "c1", "local", "m", "m q", "ok", paired={"kld_mean": kld})

    (worse,) = [v for v in compare({"c1": [case("a", zero)]}, {"c1": case("b", moved)}).verdicts
                if v.metric == "kld_mean"]  # fmt: skip
    assert worse.verdict == "worse" and worse.change_pct is None
    assert worse.reason.startswith(f"{sum(moved) / 60:+.4g} nats per token, p=")
    (same,) = [v for v in compare({"c1": [case("a", moved)]}, {"c1": case("b", moved)}).verdicts
               if v.metric == "kld_mean"]  # fmt: skip
    assert same.verdict == "not significant" and "+0 nats per token" in same.reason


def test_peak_memory_is_the_speed_trials_not_the_quality_step(run):
    """Scoring keeps a context and rows of logits of its own: the case's peak_rss_mb is taken before it."""
    q = run["folder"] / "results" / "q" / "cases" / run["rows"]["tiny"]["case_id"]
    agent = json.loads((q / "agent.json").read_text())
    assert agent["peak_rss_mb"] <= agent["peak_rss_quality_mb"]
    assert run["tiny"]["summary"]["peak_rss_mb"] == agent["peak_rss_mb"]
    assert list(agent["phases"])[-1] == "quality" and agent["phases"]["quality"][0] >= agent["phases"]["trials"][1]
