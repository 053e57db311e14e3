"""The agent's environment: started from an allow-list, never inherited whole, and recorded.

A variable set in the shell melt starts from (the host's for `local`, the device's login shell over
SSH, the `adb shell` on a phone) can change a runtime's speed unseen: OMP_NUM_THREADS, GGML_*,
OPENBLAS_CORETYPE, LD_PRELOAD of another allocator... So the agent starts with only ALLOWED (what a
process needs to start and find its files; none of it steers a kernel) plus the names the device
profile passes (`env:`), and records what it got (`record`). As pyperf does for its workers
(pyperf/_utils.py create_environ: PATH, HOME, PYTHONPATH, the locale, and names asked for).

Profile items: `NAME` passes the variable with the value it has where melt starts the agent (unset
there: not set); `NAME=value` sets it to that value. The agent is told, through MELT_ENV_PASSED and
MELT_ENV_WITHHELD, which names were passed and which speed-relevant ones it was kept from, so
agent.json can say "OMP_NUM_THREADS was set in your shell and not passed".

Two ways to build it, the same rules: `agent_environ` (a dict, for a local process) and
`sh_wrapper` (a POSIX sh prefix that runs a command under `env -i` with the rules applied by the
device's own shell; dash, mksh, bash, busybox and toybox `env -i` all take it). Standard library only.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from fnmatch import fnmatchcase

# What every agent needs to start; nothing here changes how fast a kernel runs.
ALLOWED = (
    "PATH",  # finding python3, sh, timeout, the llama.cpp tools
    "HOME",  # the user's site-packages (pip --user) and ~ in paths
    "USER",
    "LOGNAME",
    "LANG",  # Python's text encoding; the llama.cpp tools still run under LC_ALL=C (llama_cpp_cli.SH_ENV)
    "LANGUAGE",
    "LC_*",
    "TZ",  # wall-clock stamps in logs
    "TMPDIR",
    "PYTHONPATH",  # where the runtime was installed, when not in site-packages (pyperf passes it too)
    "ANDROID_*",  # bionic and toybox find system files through these on a phone
)

# Every variable that can change a runtime's speed: recorded with its value when the agent has it,
# by name when it was set where melt started and withheld. The family, and why it matters.
SPEED_RELEVANT = {
    "OMP_*": "OpenMP (ggml built with GGML_OPENMP, ONNX Runtime, BLAS): thread count, binding, spin/sleep",
    "GOMP_*": "GNU libgomp: spin count, CPU affinity",
    "KMP_*": "LLVM/Intel OpenMP: affinity, block time",
    "GGML_*": "ggml reads these at run time: scheduler, CUDA/Vulkan/OpenCL/Hexagon backend switches",
    "LLAMA_*": "llama.cpp tools take LLAMA_ARG_* as flags; llama-cpp-python loads the library LLAMA_CPP_LIB_PATH names",
    "OPENBLAS_*": "OpenBLAS: thread count, OPENBLAS_CORETYPE picks the kernels",
    "GOTO_NUM_THREADS": "OpenBLAS (GotoBLAS heritage) thread count",
    "MKL_*": "Intel MKL: thread count, MKL_ENABLE_INSTRUCTIONS caps the ISA",
    "BLIS_*": "BLIS thread counts",
    "VECLIB_*": "Apple Accelerate thread count",
    "NVPL_*": "NVIDIA Performance Libraries (Grace): BLAS threads and CPU type",
    "DNNL_*": "oneDNN (ONNX Runtime DNNL provider): DNNL_MAX_CPU_ISA caps the ISA",
    "ONEDNN_*": "oneDNN, newer spelling",
    "ORT_*": "ONNX Runtime switches",
    "ONNXRUNTIME_*": "ONNX Runtime switches",
    "CUDA_*": "CUDA: CUDA_VISIBLE_DEVICES picks the GPU, CUDA_LAUNCH_BLOCKING serialises kernels",
    "HIP_*": "ROCm HIP: device selection",
    "ROCR_*": "ROCm runtime: device selection",
    "HSA_*": "ROCm: HSA_OVERRIDE_GFX_VERSION changes the kernels used",
    "VK_*": "Vulkan loader: VK_ICD_FILENAMES picks the driver",
    "MESA_*": "Mesa drivers: device selection and tuning",
    "SYCL_*": "SYCL backend: device selection, caching",
    "ONEAPI_*": "oneAPI: ONEAPI_DEVICE_SELECTOR",
    "ADSP_LIBRARY_PATH": "Android DSP libraries (llama.cpp Hexagon backend)",
    "MALLOC_*": "glibc malloc tunables (arenas, trim and mmap thresholds); jemalloc's MALLOC_CONF",
    "TCMALLOC_*": "tcmalloc tuning",
    "GLIBC_TUNABLES": "glibc tunables: malloc, and glibc.cpu.hwcaps masks ISA features",
    "LD_*": "the dynamic loader: LD_PRELOAD (another allocator), LD_LIBRARY_PATH (which libggml/libcuda loads)",
    # TensorFlow's, named one by one: Terraform also uses TF_ (TF_CLI_CONFIG_FILE) and is no runtime
    "TF_NUM_*": "TensorFlow (Lite) thread pools",
    "TF_ENABLE_*": "TensorFlow: TF_ENABLE_ONEDNN_OPTS",
    "TF_XLA_*": "TensorFlow XLA flags",
    "TF_GPU_*": "TensorFlow GPU thread modes",
    "NUMEXPR_*": "numexpr thread pool (numeric Python libraries the agent may import)",
    "PYTHON_CPU_COUNT": "overrides os.cpu_count(): llama-cpp-python's default thread count derives from it",
    "PYTHON_GIL": "free-threaded Python: GIL on or off",
    "PYTHONMALLOC": "the Python allocator (debug hooks slow every allocation)",
    "PYTHONDEVMODE": "Python development mode: debug hooks, warnings",
    "PYTHONTRACEMALLOC": "tracemalloc: traces every allocation",
}

# melt's channel to the agent: which names the profile passed, which speed-relevant ones were withheld
PASSED_VAR = "MELT_ENV_PASSED"
WITHHELD_VAR = "MELT_ENV_WITHHELD"
_CHANNEL = (PASSED_VAR, WITHHELD_VAR)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _matches(name: str, patterns) -> bool:
    return any(fnmatchcase(name, p) for p in patterns)


def is_allowed(name: str) -> bool:
    return _matches(name, ALLOWED)


def is_speed_relevant(name: str) -> bool:
    return _matches(name, SPEED_RELEVANT)


def check_pass(item: str) -> str:
    """A profile `env:` item, `NAME` or `NAME=value`, returned unchanged. Raises ValueError (the text says what
    was expected) for anything else: a name must be a shell variable name, and MELT_ENV_* is melt's own."""
    name, _, _ = item.partition("=")
    if not _NAME.fullmatch(name):
        raise ValueError("NAME or NAME=value, NAME made of letters, digits and _ (not starting with a digit)")
    if name.startswith("MELT_ENV_"):
        raise ValueError(f"a name other than {name}: MELT_ENV_* tells the agent what melt passed")
    return item


def split_passes(items: list[str]) -> tuple[list[str], dict[str, str]]:
    """Profile items -> (names whose value comes from where the agent starts, {name: value given})."""
    by_name, given = [], {}
    for item in items:
        name, eq, value = check_pass(item).partition("=")
        if eq:
            given[name] = value
        elif name not in by_name:
            by_name.append(name)
    return [n for n in by_name if n not in given], given


def agent_environ(source: Mapping[str, str], passes: list[str]) -> dict[str, str]:
    """The environment a local agent starts with: ALLOWED and the passed names taken from source (unset
    there: left out), the `NAME=value` items, and melt's channel (MELT_ENV_PASSED, MELT_ENV_WITHHELD:
    space-separated names). Raises ValueError for a bad item (check_pass)."""
    by_name, given = split_passes(passes)
    env = {k: v for k, v in source.items() if k not in _CHANNEL and (is_allowed(k) or k in by_name)}
    env.update(given)
    withheld = sorted(k for k in source if is_speed_relevant(k) and k not in env and k not in given)
    env[PASSED_VAR] = " ".join([*by_name, *given])
    env[WITHHELD_VAR] = " ".join(withheld)
    return env


def _case_patterns(patterns) -> str:
    """sh `case` patterns: fnmatch's * is the shell's *, and the names hold nothing else special."""
    return "|".join(patterns)


def sh_wrapper(passes: list[str]) -> list[str]:
    """argv prefix ["sh", "-c", SCRIPT, "sh"]: `[*sh_wrapper(p), *argv]` runs argv on the device under
    `env -i` with the same rules as agent_environ, applied by the device's shell to its own environment.
    The names come from `env` (a line starting NAME= that the shell has as a variable: a multi-line
    value's continuation lines are not names); each kept value is read by name and handed to `env -i` as
    one argument, never pasted into the script. Raises ValueError for a bad item (check_pass)."""
    by_name, given = split_passes(passes)
    skip = _case_patterns([*_CHANNEL, *given])
    literal = " ".join(shlex.quote(f"{k}={v}") for k, v in given.items())
    passed = shlex.quote(" ".join([*by_name, *given]))
    script = (
        _SH.replace("@SKIP@", skip)
        .replace("@KEEP@", _case_patterns([*ALLOWED, *by_name]))
        .replace("@SPEED@", _case_patterns(SPEED_RELEVANT))
        .replace("@LITERAL@", literal)
        .replace("@PASSED@", f"{PASSED_VAR}={passed}")
        .replace("@WITHHELD@", WITHHELD_VAR)
    )
    return ["sh", "-c", script, "sh"]


# "$@" is the command; each kept NAME=value is put before it, so `env -i` sets them and runs it.
_SH = r"""w=
for n in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p'); do
  eval "s=\${$n+x} v=\${$n-}"
  [ "$s" = x ] || continue
  case $n in @SKIP@) continue ;; esac
  case $n in @KEEP@) set -- "$n=$v" "$@" ;; @SPEED@) w="$w $n" ;; esac
done
exec env -i @LITERAL@ @PASSED@ @WITHHELD@="${w# }" "$@"
"""


def record(environ: Mapping[str, str]) -> dict:
    """What agent.json and the `env` output say about the agent's own environment:
    {"controlled": whether melt built it (its channel is there),
     "variables": {name: value} for every speed-relevant or passed variable the agent has,
     "passed": names the profile passed, "passed_unset": those of them not set where the agent started,
     "withheld": speed-relevant names set where melt started the agent and kept from it (None: unknown),
     "names": every variable name the agent has (melt's channel left out)}."""
    controlled = PASSED_VAR in environ
    passed = environ.get(PASSED_VAR, "").split()
    names = sorted(k for k in environ if k not in _CHANNEL)
    return {
        "controlled": controlled,
        "variables": {k: environ[k] for k in names if is_speed_relevant(k) or k in passed},
        "passed": passed,
        "passed_unset": [k for k in passed if k not in environ],
        "withheld": sorted(environ.get(WITHHELD_VAR, "").split()) if controlled else None,
        "names": names,
    }


def parse_env_listing(text: str) -> dict[str, str]:
    """`env` output (NAME=value lines, POSIX env / toybox / busybox) as a dict. A line that does not start
    with NAME= continues the previous value (a value holding a newline); such a continuation line that looks
    like NAME=... cannot be told from a variable, the one ambiguity of this format."""
    found: dict[str, str] = {}
    last = None
    for line in text.split("\n"):
        name, eq, value = line.partition("=")
        if eq and _NAME.fullmatch(name):
            found[name] = value
            last = name
        elif last is not None:
            found[last] += "\n" + line
    if last is not None and text.endswith("\n"):
        found[last] = found[last][:-1]  # the listing's own last newline
    return found
