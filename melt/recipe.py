"""Recipe schema, validation and matrix expansion into cases.

A recipe says what to measure: models (each with a runtime, a source, a workload and params),
and the measurement protocol. Every list under `params` (and `workload.prompt_tokens`) is a
matrix axis; the cartesian product per model, per device, gives the cases.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Field, model_serializer, model_validator

from melt import sources
from melt.errors import InputError, Problem
from melt.schema import Strict, axis, validate
from melt.yamlfile import YamlDoc, load

Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")]
PositiveInt = Annotated[int, Field(ge=1)]
KV_CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")


def _flash_attn(value: Any) -> Any:
    """flash_attn as a case holds it: on and off as the booleans recipes have always written (true, false),
    so a recipe's case_ids stay what they were; auto as "auto". Unquoted YAML on / off are booleans already."""
    if isinstance(value, str) and value in ("on", "off"):
        return value == "on"
    if isinstance(value, bool) or value == "auto":
        return value
    raise ValueError("auto, on or off (true and false are on and off)")


# llama.cpp's flash attention: auto (its default: on wherever the backend runs it), on or off
FlashAttn = Annotated[Union[bool, Literal["auto"]], BeforeValidator(_flash_attn)]  # noqa: UP007


class Source(Strict):
    path: str | None = None
    package_file: str | None = None
    python: str | None = None
    url: str | None = None
    pip: str | None = None  # the pip package that provides a package_file / python source
    sha256: Sha256 | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        kinds = [k for k in sources.KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"exactly one of {', '.join(sources.KINDS)} (found {kinds or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in sources.KINDS if getattr(self, k) is not None)

    @property
    def ref(self) -> str:
        return getattr(self, self.kind)


class LlamaCppWorkload(Strict):
    prompt_tokens: axis(PositiveInt) | None = None
    prompts: str | None = None  # JSONL file, one {"prompt": "..."} per line, relative to the recipe
    n_gen: PositiveInt = 64

    @model_validator(mode="after")
    def _one_prompt_kind(self) -> LlamaCppWorkload:
        if (self.prompt_tokens is None) == (self.prompts is None):
            raise ValueError("exactly one of prompt_tokens (synthetic prompts of N tokens) or prompts (a JSONL file)")
        return self


class LlamaCppParams(Strict):
    """llama.cpp's own parameters; one left out is llama.cpp's default (melt.runtimes.llama_cpp says which
    default each takes), and stays out of the case's identity."""

    threads: axis(PositiveInt) | None = None
    threads_batch: axis(PositiveInt) | None = None
    n_ctx: axis(PositiveInt) | None = None
    n_batch: axis(PositiveInt) | None = None
    n_ubatch: axis(PositiveInt) | None = None
    n_gpu_layers: axis(Annotated[int, Field(ge=-1)]) | None = None
    flash_attn: axis(FlashAttn) | None = None
    cache_type_k: axis(Literal[KV_CACHE_TYPES]) | None = None
    cache_type_v: axis(Literal[KV_CACHE_TYPES]) | None = None
    use_mmap: axis(bool) | None = None
    swa_full: axis(bool) | None = None  # a full-size sliding-window KV cache; left out: false, as llama.cpp's tools


class Perplexity(Strict):
    """Perplexity as llama.cpp's llama-perplexity scores it (melt.quality.perplexity): non-overlapping windows
    of n_ctx tokens, the second half of each scored. text: a UTF-8 file relative to the recipe (default: melt's
    shipped public-domain text, melt/runtimes/prompt_text.txt); it must tokenize to at least 2 x n_ctx tokens."""

    text: str | None = None
    n_ctx: Annotated[int, Field(ge=16)] = 512
    max_chunks: PositiveInt | None = 16  # None: every whole window of the text


class Choices(Strict):
    """Multiple choice by log-likelihood (melt.runtimes.llama_quality.multiple_choice). file: JSONL relative to the
    recipe, one {"context": str, "choices": [str, ...], "answer": index} per line (default: melt's 24-question
    smoke set, melt/runtimes/mc_smoke.jsonl: a check that scoring runs, not a benchmark); limit: the first N."""

    file: str | None = None
    limit: PositiveInt | None = 200


class Outputs(Strict):
    """Greedy outputs kept for drift checks (melt.runtimes.llama_quality.greedy_outputs): prompts, a JSONL file of
    {"prompt": "..."} relative to the recipe; n_gen tokens each."""

    prompts: str
    n_gen: PositiveInt = 64


class LlamaCppQuality(Strict):
    """Measured once per case, after the speed trials, in the same agent process, with the same model and
    params (DESIGN.md "Recipe": quality)."""

    perplexity: Perplexity | None = None
    choices: Choices | None = None
    outputs: Outputs | None = None
    # another llama_cpp model id of this recipe, with the same tokenizer and quality.perplexity: KL divergence of
    # this model's next-token distributions from it, on the perplexity text (melt.runtimes.llama_quality)
    reference: Identifier | None = None


class LlamaCppCliQuality(Strict):
    """Quality through the device's own llama-perplexity, after the speed runs, with the case's params
    (melt.runtimes.llama_cpp_cli.quality_script): perplexity, and KL divergence against a reference llama_cpp_cli
    model (llama-perplexity's --kl-divergence-base file travels from the reference's case), and multiple choice
    through its --multiple-choice mode (accuracy_tok_pct). Greedy outputs are not measured this way (yet)."""

    perplexity: Perplexity | None = None
    reference: Identifier | None = None
    choices: Choices | None = None  # through --multiple-choice: accuracy_tok_pct


class LlamaCppModel(Strict):
    id: Identifier
    runtime: Literal["llama_cpp"]
    source: Source
    sha256: Sha256 | None = None
    workload: LlamaCppWorkload
    params: LlamaCppParams = LlamaCppParams()
    quality: LlamaCppQuality | None = None


class OrtInput(Strict):
    """One model input: a fixed value, or random data (melt/onnx_feeds.py says which inputs may be random)."""

    shape: list[Annotated[int, Field(ge=0)]] | None = None  # random data of this shape (open dimensions)
    value: int | float | bool | str | list[Any] | None = None  # a fixed value: scalars, shapes, strings, ...
    range: Annotated[list[int], Field(min_length=2, max_length=2)] | None = None  # random integers in [low, high)

    @model_validator(mode="after")
    def _value_or_random(self) -> OrtInput:
        if self.value is not None and (self.shape is not None or self.range is not None):
            raise ValueError("either value (a fixed value) or shape and/or range (random data), not both")
        if self.value is None and self.shape is None and self.range is None:
            raise ValueError("value (a fixed value), or shape and/or range (random data)")
        return self

    @model_serializer(mode="wrap")
    def _without_unset_range(self, handler) -> dict:
        """range only where given: an input as it was before range existed keeps its case_id."""
        data = handler(self)
        if data.get("range") is None:
            data.pop("range", None)
        return data


class OrtWorkload(Strict):
    inputs: dict[str, OrtInput] = {}
    seed: int = 0


GRAPH_OPT_LEVELS = ("disable", "basic", "extended", "all")


class OrtParams(Strict):
    intra_op_threads: axis(Annotated[int, Field(ge=0)]) | None = None
    inter_op_threads: axis(Annotated[int, Field(ge=0)]) | None = None
    graph_optimization_level: axis(Literal[GRAPH_OPT_LEVELS]) | None = None
    execution_provider: axis(str) | None = None
    execution_mode: axis(Literal["sequential", "parallel"]) | None = None


class OrtModel(Strict):
    id: Identifier
    runtime: Literal["onnxruntime"]
    source: Source
    sha256: Sha256 | None = None
    workload: OrtWorkload = OrtWorkload()
    params: OrtParams = OrtParams()


class LlamaCppCliParams(Strict):
    """llama-bench's own options: -t, -b, -ub, -ngl, -fa, -ctk, -ctv; one left out is not passed, so the tool's
    own default applies."""

    threads: axis(PositiveInt) | None = None
    n_batch: axis(PositiveInt) | None = None
    n_ubatch: axis(PositiveInt) | None = None
    n_gpu_layers: axis(Annotated[int, Field(ge=-1)]) | None = None
    flash_attn: axis(FlashAttn) | None = None
    cache_type_k: axis(Literal[KV_CACHE_TYPES]) | None = None
    cache_type_v: axis(Literal[KV_CACHE_TYPES]) | None = None


class LlamaCppCliModel(Strict):
    """A llama.cpp build already on the device (profile: llama_cpp_bin), driven through llama-bench:
    for phones, where there is no Python."""

    id: Identifier
    runtime: Literal["llama_cpp_cli"]
    source: Source
    sha256: Sha256 | None = None
    workload: LlamaCppWorkload  # prompt_tokens: llama-bench; prompts: one llama-completion run per trial
    params: LlamaCppCliParams = LlamaCppCliParams()
    quality: LlamaCppCliQuality | None = None


ModelSpec = Annotated[Union[LlamaCppModel, OrtModel, LlamaCppCliModel], Field(discriminator="runtime")]  # noqa: UP007


class Protocol(Strict):
    warmup: Annotated[int, Field(ge=0)] = 1
    repetitions: PositiveInt = 10  # 10 trials: 10 time blocks for melt compare's within-run spread (significance.py)
    min_duration_s: Annotated[float, Field(ge=0)] = 1.0
    max_repetitions: PositiveInt = 100_000  # a cap for very fast models with a long min_duration_s
    cooldown_s: Annotated[float, Field(ge=0)] = 0.0
    timeout_s: Annotated[float, Field(gt=0)] = 1800.0  # per case, on the host; the agent is killed after
    # the sustained protocol (melt.agent.protocol, melt.analysis.sustained): after the warm-ups, trials back to back
    # with no pause for this many seconds, in place of repetitions and min_duration_s (max_repetitions still caps)
    sustained_s: Annotated[float, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _cap(self) -> Protocol:
        if self.max_repetitions < self.repetitions:
            raise ValueError(f"max_repetitions >= repetitions ({self.repetitions})")
        if self.sustained_s is not None and self.timeout_s <= self.sustained_s:
            raise ValueError(
                f"timeout_s (the whole case's limit, now {self.timeout_s:g}) > sustained_s ({self.sustained_s:g}), "
                "with room for the load, the warm-ups and the last trial"
            )
        return self

    @model_serializer(mode="wrap")
    def _without_unset_sustained(self, handler) -> dict:
        """sustained_s only where given: a protocol as it was before the sustained protocol keeps its case_id."""
        data = handler(self)
        if data.get("sustained_s") is None:
            data.pop("sustained_s", None)
        return data


class Telemetry(Strict):
    interval_ms: Annotated[int, Field(ge=0)] = 100  # 0: no sampling
    idle_s: Annotated[float, Field(ge=0)] = 3.0  # idle window before the case: the power baseline
    # a case whose trials shared the machine beyond these is semivalid (melt/analysis/busy.py)
    max_foreign_cpu_pct: Annotated[float, Field(ge=0)] = 5.0  # CPU other processes used, % of one core
    max_steal_pct: Annotated[float, Field(ge=0)] = 2.0  # time a hypervisor took, % of all CPU time
    # beyond this coefficient of variation of the trials' figure the case is semivalid (melt/analysis/metrics.py)
    max_cv_pct: Annotated[float, Field(gt=0)] = 10.0
    # measure each device's memory bandwidth once a run, before its cases (melt.devices.bandwidth): the roofline's
    # denominator; false: the profile's limits.mem_bandwidth_gbs where it has one
    bandwidth: bool = False
    # time a fixed loop (melt.agent.reference_loop) right before and right after the trials: the machine's own
    # speed around them (summary ref_loop_mops_s)
    reference_loop: bool = True
    # beyond this change of the loop's speed from before the trials to after them the case is semivalid: the
    # machine itself drifted during the trials (melt/analysis/metrics.py). Off unless set: on a VM whose core is
    # shared with a co-tenant the loop's speed swings by 20-40% within a second, whatever the trials did
    max_machine_drift_pct: Annotated[float, Field(gt=0)] | None = None


class Gate(Strict):
    max_temp_c: float  # wait before each case until the hottest zone is below this
    timeout_s: Annotated[float, Field(gt=0)] = 300.0


class RecipeSpec(Strict):
    name: Identifier
    description: str = ""
    models: Annotated[list[ModelSpec], Field(min_length=1)]
    protocol: Protocol = Protocol()
    telemetry: Telemetry = Telemetry()
    gate: Gate | None = None


@dataclass(frozen=True)
class Recipe:
    """A validated recipe and where it came from."""

    path: Path
    spec: RecipeSpec
    sha256: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def directory(self) -> Path:
        return self.path.parent

    def model(self, model_id: str) -> LlamaCppModel | OrtModel:
        return next(m for m in self.spec.models if m.id == model_id)

    def resolved(self) -> dict:
        """The recipe with every default filled in, as recorded in run.json."""
        return self.spec.model_dump(mode="json")


@dataclass(frozen=True)
class Case:
    """One point of the matrix: recipe x device x parameter values."""

    case_id: str
    recipe: str
    device: str
    model_id: str
    runtime: str
    source: dict
    workload: dict
    params: dict
    protocol: dict
    label: str = field(compare=False, default="")
    telemetry: dict = field(compare=False, default_factory=dict)  # how it is observed: not in case_id
    gate: dict | None = field(compare=False, default=None)
    # what is measured of its output (perplexity, ...): a figure of its own, beside the speed ones; not in
    # case_id, so a quality block added to a recipe keeps the speed figures' history
    quality: dict | None = field(compare=False, default=None)

    def to_json(self) -> dict:
        return {
            "case_id": self.case_id,
            "label": self.label,
            "recipe": self.recipe,
            "device": self.device,
            "model": self.model_id,
            "runtime": self.runtime,
            "source": self.source,
            "workload": self.workload,
            "params": self.params,
            "protocol": self.protocol,
            "telemetry": self.telemetry,
            "gate": self.gate,
            "quality": self.quality,
        }


def case_id_of(identity: dict) -> str:
    """Stable id: sha256 of the canonical JSON of what the user asked for (no paths, no versions)."""
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def _point_label(values: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())


def expand(recipe: Recipe, devices: list[str]) -> list[Case]:
    """Cartesian product of each model's axes, for each device, in a stable order."""
    cases = []
    protocol = recipe.spec.protocol.model_dump(mode="json")
    telemetry = recipe.spec.telemetry.model_dump(mode="json")
    gate = recipe.spec.gate.model_dump(mode="json") if recipe.spec.gate else None
    for device in devices:
        for model in recipe.spec.models:
            params = {k: v for k, v in model.params.model_dump(mode="json").items() if v is not None}
            workload = {k: v for k, v in model.workload.model_dump(mode="json").items() if v is not None}
            axes = {f"params.{k}": v for k, v in params.items()}
            if "prompt_tokens" in workload:
                axes = {"workload.prompt_tokens": workload["prompt_tokens"], **axes}
            names = list(axes)
            for combo in itertools.product(*(axes[n] for n in names)):
                point = dict(zip(names, combo, strict=False))
                case_params = {k: point[f"params.{k}"] for k in params}
                case_workload = dict(workload)
                if "prompt_tokens" in workload:
                    case_workload["prompt_tokens"] = point["workload.prompt_tokens"]
                source = model.source.model_dump(mode="json", exclude_none=True)
                identity = {
                    "recipe": recipe.name,
                    "device": device,
                    "model": model.id,
                    "runtime": model.runtime,
                    "source": source,
                    "workload": case_workload,
                    "params": case_params,
                    "protocol": protocol,
                }
                label = f"{model.id} " + _point_label({n.split(".", 1)[1]: v for n, v in point.items()})
                cases.append(
                    Case(
                        case_id=case_id_of(identity),
                        recipe=recipe.name,
                        device=device,
                        model_id=model.id,
                        runtime=model.runtime,
                        source=source,
                        workload=case_workload,
                        params=case_params,
                        protocol=protocol,
                        label=label.strip(),
                        telemetry=telemetry,
                        gate=gate,
                        quality=_quality(model),
                    )
                )
    return _with_references(cases)


def _with_references(cases: list[Case]) -> list[Case]:
    """Cases whose model has a quality.reference get the case of that model they are compared with
    (quality.reference_case: the reference's first case on the same device, else its first case), and those
    reference cases keep their top-k log-probabilities for them (quality.kld_base). References run first: they
    are moved ahead of every other case, each device's order otherwise kept."""
    refs = {(c.recipe, c.model_id) for c in cases if (c.quality or {}).get("reference")}
    if not refs:
        return cases
    chosen: set[str] = set()
    for c in cases:
        ref_id = (c.quality or {}).get("reference")
        if not ref_id:
            continue
        candidates = [r for r in cases if r.recipe == c.recipe and r.model_id == ref_id]
        ref = next((r for r in candidates if r.device == c.device), candidates[0])
        c.quality["reference_case"] = ref.case_id
        chosen.add(ref.case_id)
    for c in cases:
        if c.case_id in chosen:  # a reference has quality.perplexity (_check_reference), so a quality dict
            c.quality["kld_base"] = True
    return sorted(cases, key=lambda c: c.case_id not in chosen)


def _quality(model) -> dict | None:
    """A model's quality block as a case holds it (None where it has none)."""
    quality = getattr(model, "quality", None)
    if quality is None:
        return None
    return quality.model_dump(mode="json", exclude_none=True) or None


def _check_quality(doc: YamlDoc, i: int, model: LlamaCppModel | LlamaCppCliModel) -> list[Problem]:
    quality = model.quality or LlamaCppQuality()
    problems = []
    if quality.perplexity is not None and quality.perplexity.text is not None:
        path = (doc.path.parent / quality.perplexity.text).resolve()
        key = ("models", i, "quality", "perplexity", "text")
        try:
            path.read_text(encoding="utf-8")
        except FileNotFoundError:
            problems.append(doc.problem(key, "a UTF-8 text file (relative to the recipe)", f"no file {path}"))
        except (OSError, UnicodeDecodeError) as e:
            problems.append(doc.problem(key, "a UTF-8 text file (relative to the recipe)", f"{path}: {e}"))
    if getattr(quality, "choices", None) is not None and quality.choices.file is not None:
        key = ("models", i, "quality", "choices", "file")
        path = (doc.path.parent / quality.choices.file).resolve()
        problems += [doc.problem(key, expected, found) for expected, found in check_choices_file(path)]
    if getattr(quality, "outputs", None) is not None:
        problems += _check_prompts_file(doc, i, quality.outputs.prompts, ("models", i, "quality", "outputs", "prompts"))
    return problems


def _check_reference(doc: YamlDoc, spec: RecipeSpec) -> list[Problem]:
    """A quality.reference names another model of the recipe, of the same runtime (llama_cpp keeps top-k
    log-probabilities, llama_cpp_cli llama-perplexity's own base file: neither reads the other's), that measures
    perplexity on the same text and n_ctx as this one (the KL divergence is taken on the tokens both score)."""
    problems = []
    by_id = {m.id: m for m in spec.models}
    for i, model in enumerate(spec.models):
        ref_id = getattr(model.quality, "reference", None) if getattr(model, "quality", None) else None
        if ref_id is None:
            continue
        key = ("models", i, "quality", "reference")
        ref = by_id.get(ref_id)
        expected = f"the id of another {model.runtime} model of this recipe with quality.perplexity"
        if ref is None or ref is model or ref.runtime != model.runtime:
            what = "no such model" if ref is None else "itself" if ref is model else f"a {ref.runtime} model"
            problems.append(doc.problem(key, expected, f"{ref_id!r} ({what})"))
            continue
        mine, theirs = model.quality.perplexity, ref.quality.perplexity if ref.quality else None
        if mine is None:
            problems.append(doc.problem(key, "quality.perplexity beside quality.reference (KL is taken on its text)",
                                        "no quality.perplexity"))  # fmt: skip
        elif theirs is None:
            problems.append(doc.problem(key, expected, f"{ref_id!r}, which has no quality.perplexity"))
        elif mine.model_dump() != theirs.model_dump():
            problems.append(doc.problem(key, f"a reference scoring the same text, n_ctx and max_chunks as this model "
                                        f"({mine.model_dump(exclude_none=True)})",
                                        f"{ref_id!r} with {theirs.model_dump(exclude_none=True)}"))  # fmt: skip
    return problems


CHOICES_FORM = (
    'a JSONL file of {"context": str, "choices": [two or more str], "answer": index} (relative to the recipe)'
)


def check_choices_file(path: Path) -> list[tuple[str, str]]:
    """(expected, found) for each thing wrong with a multiple-choice file (empty: it is good). Every line is
    checked; the first five problems are reported."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return [(CHOICES_FORM, f"no file {path}")]
    except (OSError, UnicodeDecodeError) as e:
        return [(CHOICES_FORM, f"{path}: {e}")]
    problems, n = [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        n += 1
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append((CHOICES_FORM, f"{path}:{number}: not JSON ({e.msg})"))
            continue
        choices = item.get("choices") if isinstance(item, dict) else None
        if not (
            isinstance(item, dict)
            and isinstance(item.get("context"), str)
            and isinstance(choices, list)
            and len(choices) >= 2
            and all(isinstance(c, str) and c for c in choices)
            and isinstance(item.get("answer"), int)
            and not isinstance(item.get("answer"), bool)
            and 0 <= item["answer"] < len(choices)
        ):
            problems.append((CHOICES_FORM, f"{path}:{number}: {line[:120]}"))
    if n == 0:
        problems.append((CHOICES_FORM, f"{path}: no tasks"))
    return problems[:5]


def _check_llama_workload(doc: YamlDoc, i: int, model: LlamaCppModel) -> list[Problem]:
    problems = []
    w = model.workload
    if w.prompt_tokens is not None:  # an n_ctx left out is made to fit (melt.runtimes.llama_cpp)
        for n_ctx in model.params.n_ctx or []:
            for n in w.prompt_tokens:
                if n + w.n_gen > n_ctx:
                    problems.append(
                        doc.problem(
                            ("models", i, "workload", "prompt_tokens"),
                            f"prompt_tokens + n_gen <= n_ctx ({n_ctx})",
                            f"{n} + {w.n_gen} = {n + w.n_gen}",
                        )
                    )
    if w.prompts is not None:
        problems += _check_prompts_file(doc, i, w.prompts)
    return problems


def _check_prompts_file(doc: YamlDoc, i: int, prompts: str, key: tuple = ()) -> list[Problem]:
    problems = []
    key = key or ("models", i, "workload", "prompts")
    path = (doc.path.parent / prompts).resolve()
    if not path.is_file():
        return [doc.problem(key, "a JSONL file of prompts (relative to the recipe)", f"no file {path}")]
    n_prompts = 0
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(doc.problem(key, f'{path}:{line_no}: a JSON object {{"prompt": "..."}}', str(e)))
            continue
        if not (isinstance(row, dict) and isinstance(row.get("prompt"), str) and row["prompt"]):
            problems.append(doc.problem(key, f'{path}:{line_no}: a JSON object {{"prompt": "..."}}', repr(row)[:80]))
        n_prompts += 1
    if n_prompts == 0:
        problems.append(doc.problem(key, "at least one prompt", f"an empty file {path}"))
    return problems


def ort_inputs(model: OrtModel) -> dict[str, dict]:
    """The recipe's workload.inputs as plain dicts (shape, value, range), for melt/onnx_feeds.py."""
    return {name: spec.model_dump(mode="json") for name, spec in model.workload.inputs.items()}


def _check_ort_inputs(doc: YamlDoc, i: int, model: OrtModel) -> list[Problem]:
    """The inputs against the model's graph, where the file is here already; `melt run` checks the
    others once their source is resolved (a url to download, a python source to assemble)."""
    from melt.onnx_feeds import model_feeds  # imports onnx: only when there is an ONNX model

    path = sources.locate(model.source, doc.path.parent)
    if path is None:
        return []
    _, found = model_feeds(path, ort_inputs(model), model.workload.seed)
    return [
        doc.problem(
            ("models", i, "workload", "inputs", p.name) if p.name else ("models", i, "source", model.source.kind),
            p.expected,
            p.found,
        )
        for p in found
    ]


def _check_models(doc: YamlDoc, spec: RecipeSpec) -> list[Problem]:
    problems = []
    seen: dict[str, int] = {}
    for i, model in enumerate(spec.models):
        if model.id in seen:
            problems.append(
                doc.problem(("models", i, "id"), "a unique model id", f"{model.id!r} again (models[{seen[model.id]}])")
            )
        seen.setdefault(model.id, i)
        if model.sha256 and model.source.sha256 and model.sha256.lower() != model.source.sha256.lower():
            problems.append(doc.problem(("models", i, "sha256"), "the same sha256 as source.sha256", model.sha256))
        problem = sources.check(model.source, doc.path.parent)
        if problem:
            expected, found, hint = problem
            problems.append(doc.problem(("models", i, "source", model.source.kind), expected, found + hint))
        if isinstance(model, LlamaCppModel):
            problems += _check_llama_workload(doc, i, model) + _check_quality(doc, i, model)
        elif isinstance(model, OrtModel) and not problem:
            problems += _check_ort_inputs(doc, i, model)
        elif isinstance(model, LlamaCppCliModel):
            if model.workload.prompts is not None:
                problems += _check_prompts_file(doc, i, model.workload.prompts)
            problems += _check_quality(doc, i, model)
    return problems + _check_reference(doc, spec) + _check_sustained(doc, spec)


def _check_sustained(doc: YamlDoc, spec: RecipeSpec) -> list[Problem]:
    """protocol.sustained_s stamps every trial: llama_cpp_cli does so with workload.prompts (one llama-completion
    run per trial); llama-bench (workload.prompt_tokens) times its repetitions without stamping them, so a recipe
    asking for both is refused at plan time rather than run as bursts."""
    if spec.protocol.sustained_s is None:
        return []
    return [
        doc.problem(
            ("models", i, "workload", "prompt_tokens"),
            "workload.prompts for llama_cpp_cli with protocol.sustained_s (one stamped llama-completion run per "
            "trial; llama-bench does not stamp its repetitions)",
            "prompt_tokens",
        )  # fmt: skip
        for i, model in enumerate(spec.models)
        if model.runtime == "llama_cpp_cli" and model.workload.prompt_tokens is not None
    ]


def load_recipe(path: str | Path) -> Recipe:
    """Parse and validate a recipe file; raise InputError listing every problem."""
    doc = load(Path(path), "recipe")
    spec = validate(RecipeSpec, doc)
    problems = _check_models(doc, spec)
    if problems:
        raise InputError(problems)
    return Recipe(path=Path(path).resolve(), spec=spec, sha256=hashlib.sha256(doc.path.read_bytes()).hexdigest())
