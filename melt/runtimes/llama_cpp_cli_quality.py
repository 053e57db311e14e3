"""Quality of a llama_cpp_cli case (recipe `quality`), measured by the device's own `llama-perplexity` after the
speed runs and the cool-down, with the case's params, in the same device script (so one spawn, one pull).

- perplexity: `llama-perplexity -f perplexity.txt -c n_ctx --chunks max_chunks`: non-overlapping windows of
  n_ctx tokens, the second half of each scored (the same algorithm melt's runtime llama_cpp follows, whose
  figure agrees with this tool's: benchmarks/quality_fidelity.py);
- a case other cases take as their reference also writes `--kl-divergence-base kld_own.bin`: llama.cpp's own
  file of every scored token's full-vocabulary log-probabilities, 16 bits each (n_vocab x 2 bytes per scored
  token: 2.1 GB for Gemma 3's 262,144-token vocabulary over 16 windows of 512);
- a case with a reference gets that file as kld_base.bin (melt.run hands it over, the session pushes it) and runs
  `--kl-divergence-base kld_base.bin --kl-divergence`, which prints its own perplexity on the same tokens
  beside the KL divergence, its percentiles and how often both models put the same token first.

The text and file travel into the case folder; every run's stdout and stderr are kept (quality_*.out/.log);
llama_perplexity_output reads them. Host side, standard library only.
"""

from __future__ import annotations

import json
import shlex
import struct
from pathlib import Path

from melt.runtimes.llama_perplexity_output import (
    PerplexityOutputError,
    chunk_means,
    parse_kl_divergence,
    parse_multiple_choice,
    parse_perplexity,
)

BASE_FILE = "kld_base.bin"  # the reference's llama-perplexity --kl-divergence-base file, handed to this case
OWN_FILE = "kld_own.bin"  # the one this case writes for the cases that take it as their reference
BASE_FACTS, OWN_FACTS = "kld_base.json", "kld_own.json"  # beside each, host side: its case's perplexity and id
TEXT_FILE = "perplexity.txt"
CHOICES_FILE, TASKS_FILE = "choices.jsonl", "choices.bin"  # melt's task format, and llama-perplexity's
# removed from the device once the case folder is pulled back (the host keeps what is needed)
DEVICE_ONLY_WHILE_RUNNING = (OWN_FILE, BASE_FILE, TASKS_FILE, TEXT_FILE)
ATTEMPTS = 6  # llama.cpp's async log can lose its last lines at exit (issue 22142): a run is repeated then. On a
# loaded host 3 runs of the tiny test model in a row lost their tails, so 3 attempts were not enough
MARK = "# QUALITY\n"  # where the device scripts (llama_cpp_cli) take these lines


def _flags(case: dict, tool_flags: list[str]) -> list[str]:
    threads = case["params"].get("threads")
    return [*(["-t", str(threads)] if threads else []), *tool_flags]


def script_lines(case: dict, bin_dir: str, model_path: str, tool_flags: list[str]) -> str:
    """The sh lines that measure the case's quality (empty when it asks for none), run in the case folder after
    the sampler stopped. tool_flags: the case's params as llama.cpp tool flags (llama_cpp_cli.tool_flags).
    Each run is repeated, ATTEMPTS runs at most, while its output lacks the line that ends it."""
    quality = case.get("quality") or {}
    ppl = quality.get("perplexity")
    tool = [f"{bin_dir}/llama-perplexity", "-m", model_path, *_flags(case, tool_flags)]
    runs = []
    if quality.get("choices"):
        runs.append(("quality_mc", [*tool, "-f", TASKS_FILE, "--multiple-choice"], 'grep -q "Final result" "$l"'))
    if not ppl:
        return _lines(runs)
    # one window per batch, as melt's agent scores them (-b after the case's flags: the last one counts). With
    # llama-perplexity's default -b 2048, four 512-token windows share a batch in a split KV cache, and Gemma 3
    # 270M Q4_K_M reads 9.4061 there against 9.3272 one window at a time (-fa off: 9.2864 and 9.3114): kernel
    # paths differ by ~1% in perplexity, so both ways of measuring pin the same one
    n_batch = min(int(case["params"].get("n_batch") or ppl["n_ctx"]), ppl["n_ctx"])
    window = ["-c", str(ppl["n_ctx"]), "-b", str(n_batch)]
    window += ["--chunks", str(ppl["max_chunks"])] if ppl.get("max_chunks") else []
    if quality.get("kld_base") or not quality.get("reference_case"):
        save = ["--kl-divergence-base", OWN_FILE] if quality.get("kld_base") else []
        runs.append(("quality_ppl", [*tool, "-f", TEXT_FILE, *window, *save], 'grep -q "Final estimate" "$o" "$l"'))
    if quality.get("reference_case") and not quality.get("reference_missing"):
        # the tokens come from the base file: no -f. Whole when every announced chunk has its row and, from 100
        # scored tokens on (where the tool prints them), the statistics are there
        scored = ppl["n_ctx"] - 1 - ppl["n_ctx"] // 2
        whole = (
            'w=$(sed -n "s/.*computing over \\([0-9]*\\) chunks.*/\\1/p" "$l" | head -n 1); '
            'g=$(grep -c "^ *[0-9][0-9]*  " "$o"); [ -n "$w" ] && [ "$g" -ge "$w" ] && '
            f'{{ [ $((w * {scored})) -lt 100 ] || grep -q -e "Minimum KLD" -e "KLD_10" -e "Same top p" "$o"; }}'
        )
        runs.append(("quality_kld", [*tool, *window, "--kl-divergence-base", BASE_FILE, "--kl-divergence"], whole))
    return _lines(runs)


def _lines(runs: list[tuple[str, list[str], str]]) -> str:
    if not runs:
        return ""
    lines = ["stamp quality_start\n"]
    for name, cmd, whole in runs:
        lines.append(
            f"o={name}.out; l={name}.log; a=0; while [ $a -lt {ATTEMPTS} ]; do a=$((a+1)); "
            f'{shlex.join(cmd)} < /dev/null > "$o" 2> "$l"; echo $? > {name}.rc; {whole} && break; done\n'
        )
    lines.append("stamp quality_end\n")
    return "".join(lines)


def write_tasks(jsonl: Path, out: Path, limit: int | None) -> dict:
    """melt's multiple-choice JSONL (recipe quality.choices) as llama-perplexity's binary task file
    (perplexity.cpp multiple_choice_task::deserialize, little-endian): uint32 n_tasks, uint32 byte offset of each
    task, then per task a string (uint32 length + UTF-8) question, mc1 = uint32 n, n strings, n int32 labels (1
    the right answer), mc2 = uint32 0. llama-perplexity scores `question + " " + answer`, so one leading space of
    a choice is dropped (a choice without one gains it: counted in "spaces_added"). Returns {"n",
    "spaces_added"}."""
    tasks = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    tasks = tasks if limit is None else tasks[:limit]

    def text(value: str) -> bytes:
        raw = value.encode("utf-8")
        return struct.pack("<I", len(raw)) + raw

    blobs, added = [], 0
    for t in tasks:
        answers = [c[1:] if c.startswith(" ") else c for c in t["choices"]]
        added += sum(not c.startswith(" ") for c in t["choices"])
        labels = [int(i == t["answer"]) for i in range(len(answers))]
        blobs.append(
            text(t["context"]) + struct.pack("<I", len(answers)) + b"".join(text(a) for a in answers)
            + struct.pack(f"<{len(labels)}i", *labels) + struct.pack("<I", 0)
        )  # fmt: skip
    offsets, at = [], 4 + 4 * len(blobs)
    for blob in blobs:
        offsets.append(at)
        at += len(blob)
    out.write_bytes(struct.pack("<I", len(blobs)) + struct.pack(f"<{len(offsets)}I", *offsets) + b"".join(blobs))
    return {"n": len(tasks), "spaces_added": added}


def _output(case_dir: Path, name: str) -> tuple[str, str | None]:
    """(stdout + stderr of run `name`, its exit status as text or None when it did not run)."""
    text = "".join(
        (case_dir / f"{name}.{ext}").read_text(errors="replace") + "\n"
        for ext in ("out", "log")
        if (case_dir / f"{name}.{ext}").is_file()
    )
    rc = case_dir / f"{name}.rc"
    return text, rc.read_text().strip() if rc.is_file() else None


def _scored(ppl: dict, n_chunks: int | None) -> int | None:
    """Tokens llama-perplexity scores: n_ctx - 1 - n_ctx/2 per window (its `first` to the window's end)."""
    n_ctx = ppl["n_ctx"]
    return n_chunks * (n_ctx - 1 - n_ctx // 2) if n_chunks else None


def collect(case_dir: Path, case: dict) -> dict:
    """agent.json's "quality" block for a llama_cpp_cli case, in runtime llama_cpp's shape (melt.analysis.quality):
    {"perplexity": {"ppl", "ppl_stderr", "tokens_scored", "n_chunks", "n_ctx", "chunk_nll" (mean NLL per window,
    nats: melt compare pairs windows), "method"} or {"error"}, "kld": {"kld_mean", "kld_p99", "kld_max",
    "top1_agree_pct", "ppl_ratio" (this model's PPL over the reference case's own), "chunk_kld", ...} or
    {"error"}}; {} when the case asks for no quality. A reference case also writes BASE_FACTS beside its base file."""
    quality = case.get("quality") or {}
    ppl_asked = quality.get("perplexity")
    out: dict = {}
    if quality.get("choices"):
        out["choices"] = _choices(case_dir)
    if not ppl_asked:
        return out
    method = "llama-perplexity on the device"
    if quality.get("reference_case"):
        out["kld"] = _kld(case_dir, quality, ppl_asked, method)
        # a copy of the reference's file (n_vocab x 2 bytes per scored token), which the reference's folder keeps
        (case_dir / BASE_FILE).unlink(missing_ok=True)
        kld = out["kld"]
        if "error" not in kld and not (quality.get("kld_base")):
            out["perplexity"] = {
                "ppl": kld.pop("ppl"), "ppl_stderr": kld.pop("ppl_stderr"), "n_ctx": ppl_asked["n_ctx"],
                "n_chunks": kld["n_chunks"], "tokens_scored": _scored(ppl_asked, kld["n_chunks"]),
                "chunk_nll": kld.pop("chunk_nll"), "method": f"{method} (--kl-divergence: PPL(Q))",
            }  # fmt: skip
    if "perplexity" not in out:
        out["perplexity"] = _ppl(case_dir, ppl_asked, method)
    if quality.get("kld_base") and "error" not in out["perplexity"] and (case_dir / OWN_FILE).is_file():
        facts = {"case_id": case.get("case_id"), "ppl": out["perplexity"]["ppl"], "n_ctx": ppl_asked["n_ctx"]}
        (case_dir / OWN_FACTS).write_text(json.dumps(facts))
    return out


def _failed(text: str, rc: str | None, what: str, e: Exception | None = None) -> dict:
    said = " | ".join([line for line in text.splitlines() if line.strip()][-6:]) or "nothing"
    if rc is None:
        return {"error": f"llama-perplexity did not run ({what}): the device script ended before it"}
    return {"error": f"llama-perplexity ({what}) exited {rc}{f' ({e})' if e else ''}; it said: {said}"}


def _read(case_dir: Path, name: str, parse, what: str) -> tuple[dict | None, dict | None]:
    """(what parse read from run `name`'s output, None) or (None, {"error": why}) when it read nothing or the run
    did not exit 0."""
    text, rc = _output(case_dir, name)
    try:
        found = parse(text)
    except PerplexityOutputError as e:
        return None, _failed(text, rc, what, e)
    if rc != "0":
        return None, _failed(text, rc, what)
    return found, None


def _ppl(case_dir: Path, asked: dict, method: str) -> dict:
    found, failure = _read(case_dir, "quality_ppl", parse_perplexity, "perplexity")
    if failure:
        return failure
    return {
        "ppl": found["ppl"], "ppl_stderr": found["ppl_stderr"], "n_ctx": asked["n_ctx"],
        "n_chunks": found["n_chunks"], "tokens_scored": _scored(asked, found["n_chunks"]),
        "chunk_nll": [round(x, 6) for x in chunk_means(found["running"], log=True)],
        "method": f"{method} ({found['source']})",
    }  # fmt: skip


def _kld(case_dir: Path, quality: dict, asked: dict, method: str) -> dict:
    if quality.get("reference_missing"):
        return {"error": quality["reference_missing"]}
    found, failure = _read(case_dir, "quality_kld", parse_kl_divergence, "KL divergence")
    if failure:
        return failure
    facts_file = case_dir / BASE_FACTS
    ref_ppl = json.loads(facts_file.read_text()).get("ppl") if facts_file.is_file() else None
    chunks = found["chunks"]
    out = {
        "kld_mean": found["kld_mean"], "kld_mean_stderr": found["kld_mean_stderr"], "kld_p99": found["kld_p99"],
        "kld_max": found["kld_max"], "kld_median": found["kld_median"], "top1_agree_pct": found["top1_agree_pct"],
        "ppl": found["ppl"], "ppl_stderr": found["ppl_stderr"],
        "ppl_ratio": found["ppl"] / ref_ppl if ref_ppl and found["ppl"] else None,
        "ppl_ratio_tool": found["ppl_ratio_tool"], "n_chunks": len(chunks) or None,
        "tokens": _scored(asked, len(chunks)),
        "chunk_nll": [round(x, 6) for x in chunk_means([c["ppl"] for c in chunks], log=True)],
        "chunk_kld": [round(x, 8) for x in chunk_means([c["kld_mean"] for c in chunks], log=False)],
        "method": f"{method} (--kl-divergence: the full vocabulary against the reference's log-probabilities as "
        "llama.cpp stores them, 16 bits each)",
        "missing": found["missing"], "unparsed": found["unparsed"],
    }  # fmt: skip
    if out["ppl_ratio"] is None:
        out["missing"]["ppl_ratio"] = "the reference case's perplexity was not handed over"
    return out


def _choices(case_dir: Path) -> dict:
    found, failure = _read(case_dir, "quality_mc", parse_multiple_choice, "multiple choice")
    if failure:
        return failure
    facts = json.loads((case_dir / "choices.json").read_text()) if (case_dir / "choices.json").is_file() else {}
    return {
        "accuracy_tok_pct": found["accuracy_pct"], "accuracy_tok_stderr_pct": found["stderr_pct"],
        "n": found["n"], "hits_tok": found["hits"], "tasks": facts,
        "method": "llama-perplexity --multiple-choice on the device: the choice with the highest mean log-probability "
        "per token (after the prefix all choices share) of `context + ' ' + choice`",
    }  # fmt: skip
