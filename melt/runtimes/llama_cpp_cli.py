"""Runtime llama_cpp_cli: llama.cpp's own llama-bench on a device without Python.

Device side it is two llama-bench runs driven by a POSIX sh script (prefill: ppP on an empty
context; decode: tgN at depth P, the same work as a request's decode), bracketed by phase marks
on the sampler's clock. Host side (here) its output becomes melt's files: trials.jsonl (one line
per llama-bench repetition: its samples are the trials, its own warm-up run is not among them),
agent.json (phases, build info, the tools' environment and -fa form, the error if any) and
trace.csv (from the sh sampler).

Every llama.cpp tool runs under LC_ALL=C (DEVICE_ENV): llama-cli / llama-completion call
setlocale(LC_ALL, "") (common/console.cpp) and then print their timings with the locale's decimal
mark. A param the case leaves out is not passed, so the tool's own default applies (threads:
common_cpu_get_num_math(); flash attention: auto where the build has it). The -fa spelling is the one the
binary's own --help gives (llama_cpp_cli_output.flash_attn_form); when the case asks on or off,
llama-bench's reported flash_attn must be that, else the case fails: its figures would be for another
configuration than the case names. llama-bench reports auto as auto, not what it became: with auto it is
run with -v, and how llama.cpp resolved it is read from its log (melt.runtimes.llama_log). What the tools
ran with is agent.json's load.effective_params, as for runtime llama_cpp.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from melt.runtimes.llama_cpp import flash_attn_choice
from melt.runtimes.llama_cpp_cli_output import (
    LlamaBenchOutputError,
    TimingsNotFound,
    llama_bench_command,
    llama_bench_trials,
    parse_llama_bench,
    parse_timings,
    reported_flash_attn,
)
from melt.runtimes.llama_log import (
    flash_attn_lines,
    flash_attn_resolved,
    gpu_layers_offloaded,
    load_mode,
    tool_settings,
)
from melt.telemetry import sh_trace

# The environment every llama.cpp tool runs in on a device: printf's decimal mark is then '.' whatever the
# device's locale (see the module docstring). SH_ENV is the same as the first line of a device script.
DEVICE_ENV = {"LC_ALL": "C"}
SH_ENV = "".join(f"export {k}={v}\n" for k, v in DEVICE_ENV.items())

# the driver: $1 case dir, $2 sampler.sh, $3 interval_ms, $4 sensor root, $5 idle_s, $6 cooldown_s,
# $7 prefill command, $8 decode command (each already quoted for sh by the host)
DRIVER = (
    SH_ENV
    + r"""
cd "$1" || exit 97
S=$2
stamp() { echo "$1 $(sh "$S" --now)" >> phases.txt; }
spid=
# the sampler's CPU_PID is this script: its reaped tools are the measured work
if [ "$3" -gt 0 ]; then sh "$S" "$1" "$3" "$4" "" "$$" & spid=$!; fi
stamp idle_start; sleep "$5"; stamp idle_end
stamp prefill_start; eval "$7" > prefill.jsonl 2> prefill.log; rc_p=$?; stamp prefill_end
stamp decode_start; eval "$8" > decode.jsonl 2> decode.log; rc_d=$?; stamp decode_end
stamp cooldown_start; sleep "$6"; stamp cooldown_end
if [ -n "$spid" ]; then kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; fi
# QUALITY
echo "$rc_p $rc_d" > exit_codes.txt
[ "$rc_p" -eq 0 ] && [ "$rc_d" -eq 0 ]
"""
)

FLAGS = {"n_batch": "-b", "n_ubatch": "-ub", "n_gpu_layers": "-ngl", "cache_type_k": "-ctk", "cache_type_v": "-ctv"}
PARAMS = ("threads", "n_batch", "n_ubatch", "n_gpu_layers", "flash_attn", "cache_type_k", "cache_type_v")


def flash_attn_asked(p: dict) -> str:
    """The flash attention the case asks: "on", "off", or "auto" when it says auto or nothing (the tool's
    own default then applies, as for runtime llama_cpp)."""
    return flash_attn_choice(p.get("flash_attn")) or "auto"


def resolution_log_args(tool: str, flash_attn: dict) -> list[str]:
    """Arguments that make `tool` log how llama.cpp resolved flash attention: -v for a llama-bench asked auto
    in a build that has auto (its JSON says only "auto"; -v adds libllama's load log to stderr, and nothing
    per token). Nothing otherwise: an explicit choice is what runs, an older build's default is off and
    says so, and llama-completion's log is what its default verbosity shows."""
    if tool == "llama-bench" and flash_attn.get("asked") == "auto" and flash_attn.get("form") == "on|off":
        return ["-v"]
    return []


def tool_flags(p: dict, fa_args: list[str]) -> list[str]:
    """The case's params as llama.cpp tool flags (llama-bench and llama-completion share them); fa_args is
    the -fa spelling this binary takes (llama_cpp_cli_output.flash_attn_args)."""
    extra = []
    for key, flag in FLAGS.items():
        if key in p:
            extra += [flag, str(p[key])]
    return [*extra, *fa_args]


def _convert_trace(case_dir: Path, battery_pins: dict | None) -> None:
    """The sh sampler's raw rows as trace.csv and sensors.json."""
    if (case_dir / "trace.raw.csv").is_file() and (case_dir / "sampler.json").is_file():
        sensors = sh_trace.convert(
            case_dir / "trace.raw.csv", case_dir / "sampler.json", case_dir / "trace.csv", battery_pins
        )
        (case_dir / "sensors.json").write_text(json.dumps(sensors, indent=2))


def commands(case: dict, bench: str, model_path: str, fa_args: list[str]) -> tuple[str, str]:
    """The prefill and decode llama-bench command lines, each quoted for sh. fa_args: the -fa spelling and any
    resolution_log_args."""
    p, w = case["params"], case["workload"]
    extra = tool_flags(p, fa_args)
    threads = p.get("threads")  # None: llama-bench's own default
    reps = case["protocol"]["repetitions"]
    prefill = llama_bench_command(bench, model_path, threads, w["prompt_tokens"], 0, reps, extra)
    decode = llama_bench_command(
        bench, model_path, threads, 0, w["n_gen"], reps, [*extra, "-d", str(w["prompt_tokens"])]
    )
    return shlex.join(prefill), shlex.join(decode)


def _marks(text: str) -> dict[str, int]:
    """phases.txt: `NAME CLOCK NS` lines written by the device script."""
    marks = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            marks[parts[0]] = int(parts[2])
    return marks


def _phases(text: str) -> dict:
    marks = _marks(text)
    phases = {}
    names = ["idle", "prefill", "decode", "cooldown"] + sorted(
        {m.rsplit("_", 1)[0] for m in marks if m.startswith("trial_")}, key=lambda n: int(n.split("_")[1])
    )
    for name in names:
        if f"{name}_start" in marks and f"{name}_end" in marks:
            phases[name] = [marks[f"{name}_start"], marks[f"{name}_end"]]
    if "prefill" in phases and "decode" in phases:
        phases["trials"] = [phases["prefill"][0], phases["decode"][1]]
    return phases


def runtime_info(tool: str, flash_attn: dict | None) -> dict:
    """agent.json's runtime entry: the tool, the environment it ran in, and how -fa was passed."""
    return {"name": "llama_cpp_cli", "tool": tool, "env": dict(DEVICE_ENV), "flash_attn": flash_attn}


def _flash_attn_mismatch(records: list[dict], flash_attn: dict | None) -> str | None:
    """Why llama-bench's records do not show the flash attention the case asked for; None when they do, or
    when it asked auto (then the tool's own default is what was asked). A record without the field (builds
    before flash attention) says nothing, and then none was asked. Sets flash_attn["reported"]."""
    if not flash_attn:
        return None
    try:
        reported = sorted({r for r in map(reported_flash_attn, records) if r is not None})
    except LlamaBenchOutputError as e:
        return str(e)
    flash_attn["reported"] = reported or None
    if flash_attn["asked"] not in ("on", "off"):
        return None
    wrong = [r for r in reported if r != flash_attn["asked"]]
    if not wrong:
        return None
    return (
        f"llama-bench ran with flash_attn {', '.join(wrong)} but the case asks {flash_attn['asked']} "
        f"(melt passed {' '.join(flash_attn['args']) or 'no -fa'}, as its help line "
        f"{flash_attn.get('help_line')!r} reads): these figures are not the case's"
    )


def _logs(case_dir: Path, names) -> str:
    return "".join((case_dir / n).read_text(errors="replace") for n in names if (case_dir / n).is_file())


def _bench_flash_attn(flash_attn: dict | None, log_text: str) -> tuple[str | None, str | None]:
    """(resolved, why not): how llama-bench ran flash attention, from its records' flash_attn ("reported",
    set by _flash_attn_mismatch) and, where they say auto, its -v log."""
    if not flash_attn:
        return None, "melt has no record of how flash attention was passed"
    reported = flash_attn.get("reported")
    if reported is None:
        if flash_attn.get("form") == "none":
            return "off", None  # a build from before flash attention
        resolved, why = flash_attn_resolved(log_text)
        return resolved, None if resolved else "llama-bench's records have no flash_attn field and " + why
    if reported == ["auto"]:
        resolved, why = flash_attn_resolved(log_text)
        return resolved, None if resolved else f"llama-bench reports auto; {why}"
    if len(reported) == 1:
        return reported[0], None
    return None, f"llama-bench's records report flash_attn {', '.join(reported)}"


def _effective(params: dict, asked: dict, known: dict, unknown: dict, log_text: str) -> dict:
    """agent.json's load.effective_params: what the tool ran with by recipe name (None where it did not say,
    with why in unknown), what it was asked (its own defaults included), the params the case left out, and
    llama_cpp_said {"flash_attn": the log lines read}."""
    effective = {**known, "asked": asked, "defaults": [k for k in PARAMS if k not in params]}
    effective["llama_cpp_said"] = {"flash_attn": flash_attn_lines(log_text)}
    for key in unknown:
        effective[key] = None
    if unknown:
        effective["unknown"] = unknown
    return effective


def _bench_effective(params: dict, raw: dict, flash_attn: dict | None, log_text: str) -> dict:
    """What llama-bench ran with. Its record gives the params as it took them (its defaults included):
    threads, cache types and mmap llama.cpp does not change; flash attention auto and the layers that went to
    a GPU are only in its -v log (load_mode auto too)."""
    asked = {
        "threads": raw.get("n_threads"), "n_batch": raw.get("n_batch"), "n_ubatch": raw.get("n_ubatch"),
        "n_gpu_layers": raw.get("n_gpu_layers"), "flash_attn": (flash_attn or {}).get("asked"),
        "cache_type_k": raw.get("type_k"), "cache_type_v": raw.get("type_v"),
        "use_mmap": raw["use_mmap"] if "use_mmap" in raw else raw.get("load_mode"),
    }  # fmt: skip
    known = {k: asked[k] for k in ("threads", "cache_type_k", "cache_type_v")}
    unknown = {}
    known["flash_attn"], why = _bench_flash_attn(flash_attn, log_text)
    if why:
        unknown["flash_attn"] = why
    known["n_gpu_layers"] = gpu_layers_offloaded(log_text)
    if known["n_gpu_layers"] is None:
        unknown["n_gpu_layers"] = (
            f"llama-bench reports the -ngl it took ({asked['n_gpu_layers']}), not how many layers went to a GPU; "
            "its -v log says that (melt runs -v only for flash attention auto), and only in GPU builds"
        )
    mode = load_mode(log_text)
    known["use_mmap"] = mode.startswith("mmap") if mode else asked["use_mmap"]
    if not isinstance(known["use_mmap"], bool):
        unknown["use_mmap"] = f"llama-bench reports load_mode {asked['use_mmap']!r}, not what it became"
    return _effective(params, asked, known, unknown, log_text)


def collect(case_dir: Path, battery_pins: dict | None = None, flash_attn: dict | None = None) -> dict:
    """Turn the pulled device files into trials.jsonl, trace.csv, sensors.json and agent.json. flash_attn:
    {"asked": "on"|"off"|"auto", "form", "help_line", "args"} as the session passed it; the records' own
    flash_attn is added as "reported" and, when on or off was asked, must match, else the case fails (its
    trials are still written); how it ran is added as "resolved" (with "resolved_why" when that is not known)
    and is load.effective_params' flash_attn. params: the case's (case.json next to the files)."""
    agent: dict = {"status": "failed", "runtime": runtime_info("llama-bench", flash_attn), "load": {"load_s": None}}
    phases_file = case_dir / "phases.txt"
    agent["phases"] = _phases(phases_file.read_text()) if phases_file.is_file() else {}
    _convert_trace(case_dir, battery_pins)
    text = "".join((case_dir / f).read_text() for f in ("prefill.jsonl", "decode.jsonl") if (case_dir / f).is_file())
    try:
        records = parse_llama_bench(text)
    except LlamaBenchOutputError as e:
        logs = " | ".join(
            (case_dir / f).read_text(errors="replace").strip()[-300:]
            for f in ("prefill.log", "decode.log")
            if (case_dir / f).is_file()
        )
        agent["error"] = f"llama-bench gave no results ({e}); it said: {logs or 'nothing'}"
    else:
        trials = llama_bench_trials(records)
        with open(case_dir / "trials.jsonl", "w") as f:
            for i, t in enumerate(trials):
                f.write(json.dumps({"trial": i, "warmup": False, **t}) + "\n")
        first = records[0]
        agent["runtime"].update(
            {k: first.get(k) for k in ("build_commit", "build_number", "cpu_info", "gpu_info", "model_type")}
        )
        agent["protocol"] = {"stopped_because": "llama-bench repetitions", "counted_trials": len(trials)}
        mismatch = _flash_attn_mismatch(records, flash_attn)
        case_file = case_dir / "case.json"
        params = json.loads(case_file.read_text()).get("params", {}) if case_file.is_file() else {}
        agent["load"]["effective_params"] = _bench_effective(
            params, first.get("raw", first), flash_attn, _logs(case_dir, ("prefill.log", "decode.log"))
        )
        if flash_attn:
            flash_attn["resolved"] = agent["load"]["effective_params"]["flash_attn"]
            if "flash_attn" in agent["load"]["effective_params"].get("unknown", {}):
                flash_attn["resolved_why"] = agent["load"]["effective_params"]["unknown"]["flash_attn"]
        if mismatch:
            agent["error"] = mismatch
        else:
            agent["status"] = "ok"
    (case_dir / "agent.json").write_text(json.dumps(agent, indent=2))
    return agent


# --- real prompts: one llama-completion run per trial -------------------------------------------

RUN_ATTEMPTS = 5
COMPLETION_HEAD = (
    SH_ENV
    + r"""cd "$1" || exit 97
S=$2
stamp() { echo "$1 $(sh "$S" --now)" >> phases.txt; }
spid=
# the sampler's CPU_PID is this script: its reaped tools are the measured work
if [ "$3" -gt 0 ]; then sh "$S" "$1" "$3" "$4" "" "$$" & spid=$!; fi
stamp idle_start; sleep "$5"; stamp idle_end
rc=0
"""
)
COMPLETION_TAIL = r"""stamp cooldown_start; sleep "$6"; stamp cooldown_end
if [ -n "$spid" ]; then kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; fi
# QUALITY
exit $rc
"""


# The sustained loop's clock arithmetic in 32 bits (mksh): ns_split N sets _s (seconds) and _n (ns, 0-999999999)
# of a digit string of ns without arithmetic on the whole; within A B: whether B - A < @SS@ s @SN@ ns. start and
# last: the clock read of sustained_start and of the latest run's end (the last field of phases.txt's last line).
SUSTAINED_SH = r"""ns_split() {
  if [ ${#1} -gt 9 ]; then _s=${1%?????????}; _n=${1#"$_s"}; else _s=0; _n=$1; fi
  _n=${_n#"${_n%%[!0]*}"}; [ -n "$_n" ] || _n=0
}
within() {
  ns_split "$1"; _as=$_s; _an=$_n; ns_split "$2"
  _ds=$((_s - _as)); _dn=$((_n - _an))
  if [ $_dn -lt 0 ]; then _ds=$((_ds - 1)); _dn=$((_dn + 1000000000)); fi
  [ $_ds -lt @SS@ ] || { [ $_ds -eq @SS@ ] && [ $_dn -lt @SN@ ]; }
}
stamp sustained_start; start=$(tail -n 1 phases.txt); start=${start##* }; last=$start
"""
PROMPT_SLOT = "@@melt-prompt@@"  # where the run's prompt file goes, after quoting (a sh expression in the loop)


def completion_script(case: dict, bin_dir: str, model_path: str, n_prompts: int, fa_args: list[str]) -> str:
    """The device script: warm-ups then counted trials, each one llama-completion run on the next
    prompt (prompts/pK.txt), greedy, exactly n_gen tokens (end-of-sequence ignored). With protocol.sustained_s
    the counted runs follow one another, each on the next prompt, while the one before ended (its trial_N_end
    stamp) less than that many seconds after sustained_start, as the agent's loop (melt.agent.protocol); the
    clock is the sampler's, a digit string of ns: split into seconds and ns before any arithmetic, since mksh's
    is 32-bit (SUSTAINED_SH), and nothing beyond sh and tail is needed on the device."""
    p, w, proto = case["params"], case["workload"], case["protocol"]
    extra = tool_flags(p, fa_args)
    threads = ["-t", str(p["threads"])] if "threads" in p else []  # none: the tool's own default

    def run(i: str, prompt: str) -> str:
        cmd = [f"{bin_dir}/llama-completion", "-m", model_path, *threads, "-f", PROMPT_SLOT,
               "-n", str(w["n_gen"]), "--temp", "0", "--ignore-eos", "-no-cnv", *extra]  # fmt: skip
        # llama.cpp leaks its async logger at exit (upstream issue 22142), so a run can lose its last
        # lines, the timings among them: such a run is repeated (up to RUN_ATTEMPTS runs in all), each
        # repeat counted in lost_runs.txt; a last attempt without them is no repeat (it fails the trial)
        return (
            f"a=0; while [ $a -lt {RUN_ATTEMPTS} ]; do a=$((a+1)); stamp trial_{i}_start; "
            f"{shlex.join(cmd).replace(PROMPT_SLOT, prompt)} < /dev/null > trial_{i}.out 2> trial_{i}.log "
            f"|| rc=1; stamp trial_{i}_end; "
            f'grep -q "total time" trial_{i}.log && break; '
            f'[ $a -lt {RUN_ATTEMPTS} ] && echo "trial_{i}" >> lost_runs.txt; done\n'
        )

    lines = [COMPLETION_HEAD]
    sustained_s = proto.get("sustained_s")
    fixed = proto["warmup"] if sustained_s else proto["warmup"] + proto["repetitions"]
    for i in range(fixed):
        lines.append(run(str(i), f"prompts/p{i % n_prompts}.txt"))
    if sustained_s:
        whole, frac = divmod(round(float(sustained_s) * 1e9), 1_000_000_000)
        lines.append(
            SUSTAINED_SH.replace("@SS@", str(whole)).replace("@SN@", str(frac)) + f"i={fixed}\n"
            'while within "$start" "$last"; do\n'
            f"p=$((i % {n_prompts})); {run('${i}', 'prompts/p$p.txt')}"
            "last=$(tail -n 1 phases.txt); last=${last##* }; i=$((i+1))\n"
            "done\nstamp sustained_end\n"
        )
    lines.append(COMPLETION_TAIL)
    return "".join(lines)


# A completion run's figures need these lines read: "prompt eval time = X ms / N tokens" and
# "eval time = X ms / N runs", with X and N above 0 (load time is kept when there; it is not needed).
# (line, seconds key, count key): parse_timings derives prefill_tok_s and decode_tok_s from these
COMPLETION_NEEDS = [
    ("prompt eval time", "prompt_eval_s", "n_prompt_tokens"),
    ("eval time", "eval_s", "n_eval_runs"),
]


def _timings_unread(t: dict) -> str | None:
    """Why a run's timings (parse_timings) do not give its prefill and decode figures; None when they do."""
    whys = []
    for line, seconds, count in COMPLETION_NEEDS:
        if t.get(seconds) is None or t.get(count) is None:
            whys.append(f"no readable {line!r} line")
        elif t[count] <= 0 or t[seconds] <= 0:
            # 0.00 ms is below llama.cpp's 2-decimal resolution; 0 tokens is no work: neither is a rate
            whys.append(f"{line!r} reads {t[seconds] * 1e3:.2f} ms for {t[count]}: no rate")
    if not whys:
        return None
    why = "; ".join(whys)
    if t.get("unparsed"):
        why += "; lines that look like timings but could not be read: " + " | ".join(t["unparsed"])
    return why


def _run_output(case_dir: Path, i: int) -> tuple[str, str]:
    """Run i's (text, its last words). text: the run's stdout (the generated text), then its stderr
    (llama.cpp's log, the timings at its end), each ending a line, so a log cut mid-line stays cut
    (parse_timings does not read it) instead of running on into the text. Last words: the last line of its
    stderr, else of its stdout, else "nothing"."""
    out, log = (
        (case_dir / f"trial_{i}.{ext}").read_text(errors="replace") if (case_dir / f"trial_{i}.{ext}").is_file() else ""
        for ext in ("out", "log")
    )
    said = (log.strip() or out.strip()).splitlines()[-1:] or ["nothing"]
    return (out + "\n" if out and not out.endswith("\n") else out) + log, said[0]


def _completion_effective(params: dict, flash_attn: dict | None, log_text: str) -> dict:
    """What llama-completion ran with, from its runs' logs (melt.runtimes.llama_log.tool_settings: threads,
    threads_batch, n_ctx, n_batch; flash attention where the log says). An explicit -fa on or off is what
    runs when the log does not say; auto is then not known."""
    settings = tool_settings(log_text)
    asked_fa = (flash_attn or {}).get("asked")
    asked = {k: params[k] for k in PARAMS if k in params}
    if asked_fa:
        asked["flash_attn"] = asked_fa
    known, unknown = {}, {}
    for key in ("threads", "threads_batch", "n_ctx", "n_batch"):
        if key in settings:
            known[key] = settings[key]
        else:
            unknown[key] = "llama-completion's log has no line that says it"
    resolved, why = flash_attn_resolved(log_text)
    if resolved is None and asked_fa in ("on", "off") and "no flash_attn line" in why:
        resolved = asked_fa
    known["flash_attn"] = resolved
    if resolved is None:
        unknown["flash_attn"] = (
            f"{why}: recent llama-completion builds show libllama's own lines only from -lv 4 (their default is "
            "3), which melt does not pass to timed runs"
            if "no flash_attn line" in why
            else why
        )
    return _effective(params, asked, known, unknown, log_text)


def collect_completion(
    case_dir: Path, case: dict, battery_pins: dict | None = None, flash_attn: dict | None = None
) -> dict:
    """trials.jsonl from llama.cpp's end-of-run timing lines of each run (parse_timings: either decimal
    mark). A run whose timings give no prefill and decode figure is failed, with the lines that could not be
    read in its reason, and left out of trials.jsonl; agent.json lists each as failed_runs [{trial, warmup,
    reason, unparsed}]. The case is ok when at least one counted run was read, else failed with the first
    reasons. n_gen is llama.cpp's eval runs + 1 (the first token comes from the prompt's logits).
    runs_repeated_for_lost_timings: how many runs the device script ran again because their log had lost its
    timing lines (lost_runs.txt, completion_script)."""
    agent: dict = {"status": "failed", "runtime": runtime_info("llama-completion", flash_attn)}
    if flash_attn:
        flash_attn["reported"] = None  # llama-completion's output has no record of it; its log may say
    phases_text = (case_dir / "phases.txt").read_text() if (case_dir / "phases.txt").is_file() else ""
    marks = _marks(phases_text)
    agent["phases"] = _phases(phases_text)
    _convert_trace(case_dir, battery_pins)
    proto = case["protocol"]
    trials, failed = [], []
    n_runs = proto["warmup"] + proto["repetitions"]
    if proto.get("sustained_s"):  # as many runs as began in the time (completion_script)
        n_runs = 1 + max((int(m.split("_")[1]) for m in marks if m.startswith("trial_")), default=-1)
    for i in range(n_runs):
        log, said = _run_output(case_dir, i)
        warmup = i < proto["warmup"]
        try:
            t = parse_timings(log)
        except TimingsNotFound:
            # llama.cpp's log thread can drop the last lines when a short run exits: that run is
            # lost (and said so), not guessed
            failed.append({"trial": i, "warmup": warmup, "unparsed": [],
                           "reason": f"run {i}: no timing lines; it said: {said}"})  # fmt: skip
            continue
        why = _timings_unread(t)
        if why:
            failed.append({"trial": i, "warmup": warmup, "unparsed": t["unparsed"], "reason": f"run {i}: {why}"})
            continue
        start, end = marks.get(f"trial_{i}_start"), marks.get(f"trial_{i}_end")
        trials.append({
            "trial": i, "warmup": warmup, "mode": "completion",
            "t_start_ns": start, "t_end_ns": end, "duration_s": (end - start) / 1e9 if start and end else None,
            "n_prompt": t["n_prompt_tokens"], "n_gen": t["n_eval_runs"] + 1,
            "prefill_tok_s": t["prefill_tok_s"], "decode_tok_s": t["decode_tok_s"], "load_s": t.get("load_s"),
            "timings_format": t["format"], "decimal_mark": t.get("decimal_mark"),
        })  # fmt: skip
    with open(case_dir / "trials.jsonl", "w") as f:
        for t in trials:
            f.write(json.dumps(t) + "\n")
    loads = [t["load_s"] for t in trials if not t["warmup"] and t["load_s"] is not None]
    agent["load"] = {"load_s": sorted(loads)[len(loads) // 2] if loads else None}
    log_text = _logs(case_dir, [f"trial_{i}.log" for i in range(n_runs)])
    agent["load"]["effective_params"] = _completion_effective(case.get("params", {}), flash_attn, log_text)
    if flash_attn:
        flash_attn["resolved"] = agent["load"]["effective_params"]["flash_attn"]
        if "flash_attn" in agent["load"]["effective_params"].get("unknown", {}):
            flash_attn["resolved_why"] = agent["load"]["effective_params"]["unknown"]["flash_attn"]
    counted = [t for t in trials if not t["warmup"]]
    lost = case_dir / "lost_runs.txt"
    agent["runs_repeated_for_lost_timings"] = len(lost.read_text().split()) if lost.is_file() else 0
    agent["failed_runs"] = failed
    if counted:
        agent["status"] = "ok"
        agent["protocol"] = {"stopped_because": "repetitions", "counted_trials": len(counted)}
        if proto.get("sustained_s"):  # the span melt.analysis.sustained times the windows and the onset from
            agent["protocol"].update(
                stopped_because="sustained_s elapsed", sustained_s=proto["sustained_s"],
                t_sustained_start_ns=marks.get("sustained_start"), t_sustained_end_ns=marks.get("sustained_end"),
            )  # fmt: skip
    else:
        reasons = [f["reason"] for f in failed if not f["warmup"]] or [f["reason"] for f in failed]
        agent["error"] = "no counted run gave readable timings: " + "; ".join(reasons[:3])
    (case_dir / "agent.json").write_text(json.dumps(agent, indent=2))
    return agent
