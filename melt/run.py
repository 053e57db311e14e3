"""A run: execute a plan (melt/plan.py) case by case.

Every case runs in a fresh agent process; its raw files land in its folder, metrics are derived
from them, and run.json records each case's status as it goes, so a crash or Ctrl-C loses only
the case in flight and `--resume` finishes the rest.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from melt import hostinfo, sources
from melt.analysis import roofline
from melt.analysis.metrics import case_metrics
from melt.analysis.trace import read_trace
from melt.deadline import Deadline, DeadlineExceeded
from melt.devices import bandwidth, process, spawning
from melt.devices.device import Device
from melt.devices.lock import DeviceBusy
from melt.devices.profile import DeviceProfile
from melt.devices.transport import TransportError
from melt.errors import InputError, MeltError, Problem
from melt.lab.client import LabError
from melt.lab.record import lab_record
from melt.plan import Plan
from melt.recipe import Case, OrtModel, Recipe, ort_inputs
from melt.results.layout import RunDir, check_run_id, read_json, read_trials, write_json

# what a reference case keeps for the cases compared with it, by runtime (melt.runtimes.llama_quality;
# melt.runtimes.llama_cpp_cli_quality)
# (in the reference's folder, in the dependent's): llama_cpp_cli keeps its own apart from the one it was handed
KLD_BASE_FILES = {
    "llama_cpp": (("kld_base.npz", "kld_base.npz"),),
    "llama_cpp_cli": (("kld_own.bin", "kld_base.bin"), ("kld_own.json", "kld_base.json")),
}


def shipped_text() -> Path:
    """melt's public-domain text (melt/runtimes/prompt_text.txt): the default perplexity text."""
    return Path(str(resources.files("melt.runtimes").joinpath("prompt_text.txt")))


def shipped_choices() -> Path:
    """melt's 24-question multiple-choice smoke set (melt/runtimes/mc_smoke.jsonl): the default task file, a check
    that scoring runs end to end, not a benchmark of a model."""
    return Path(str(resources.files("melt.runtimes").joinpath("mc_smoke.jsonl")))


def default_run_id(name: str, now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{name}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Outcome:
    run_dir: Path
    ok: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


Progress = Callable[..., None]


def _quiet(event: str, **info) -> None:
    pass


class Execution:
    """Carries one run from plan to results on disk: one worker per device, devices in parallel,
    each device running its cases one at a time (two cases on one device would share it)."""

    def __init__(self, the_plan: Plan, results: Path, run_id: str | None, resume: bool, progress: Progress):
        self.plan = the_plan
        self.progress = progress
        run_id = check_run_id(run_id) if run_id else default_run_id(the_plan.name)
        self.run = RunDir(Path(results) / run_id)
        self.run_id = run_id
        if resume and not self.run.exists():
            raise InputError(
                Problem(str(self.run.path), "--resume", "an earlier run with this --run-id", "no run.json there")
            )
        if not resume and self.run.path.exists() and any(self.run.path.iterdir()):
            raise InputError(
                Problem(str(self.run.path), "--run-id", "a new run id", "a folder that already holds a run"),
                hint="Use --resume to finish that run, or choose another --run-id.",
            )
        self.resume = resume
        self.lock = threading.Lock()  # manifest and outcome are shared by the device workers
        self.stop = threading.Event()
        self.all_done = threading.Event()
        self.workers_left = 0
        self.feeds: dict = {}  # (recipe, model id) -> the planned feed of every ONNX input (case.json)
        self.gguf_facts: dict = {}  # model path -> what melt.gguf_bytes read of it, once a run

    def _resolve_models(self) -> dict:
        """Before anything is written: a bad source or checksum is bad input (exit 2)."""
        models = {}
        for recipe in self.plan.recipes:
            for i, model in enumerate(recipe.spec.models):
                if model.id not in models:  # a sweep checked that one id means one model
                    models[model.id] = sources.resolve(
                        model.source,
                        recipe.directory,
                        model.sha256,
                        where=(str(recipe.path), f"models[{i}].source.{model.source.kind}"),
                    )
        return models

    def _plan_feeds(self, models: dict) -> dict:
        """Before anything is written: the feed of every ONNX model input, or bad input (exit 2).
        Keyed by (recipe name, model id): in a sweep, two recipes may feed one model differently."""
        feeds, problems = {}, []
        onnx_models = [
            (r, i, m) for r in self.plan.recipes for i, m in enumerate(r.spec.models) if isinstance(m, OrtModel)
        ]
        if onnx_models:
            from melt.onnx_feeds import model_feeds  # imports onnx: only when there is an ONNX model
        for recipe, i, model in onnx_models:
            planned, found = model_feeds(models[model.id].path, ort_inputs(model), model.workload.seed)
            for p in found:
                key = f"models[{i}].workload.inputs.{p.name}" if p.name else f"models[{i}].source"
                problems.append(Problem(str(recipe.path), key, p.expected, p.found))
            feeds[(recipe.name, model.id)] = planned
        if problems:
            raise InputError(problems)
        return feeds

    def _recipe_json(self, recipe: Recipe) -> dict:
        return {"name": recipe.name, "path": str(recipe.path), "sha256": recipe.sha256, "resolved": recipe.resolved()}

    def _manifest(self, models: dict) -> dict:
        previous = self.run.read() if self.resume else {}
        cases = previous.get("cases", {})
        for case in self.plan.cases:
            cases.setdefault(
                case.case_id,
                {"status": "pending", "label": case.label, "device": case.device, "model": case.model_id},
            )
        sweep = self.plan.sweep
        manifest = {
            "run_id": self.run_id,
            "status": "running",
            "started_at": previous.get("started_at", _now()),
            "ended_at": None,
            "resumed_at": ([*previous.get("resumed_at", []), _now()] if self.resume else []),
        }
        if sweep:  # the sweep is what was asked for; each recipe is recorded too
            manifest["recipe"] = {"name": sweep.name, "kind": "sweep", "path": str(sweep.path), "sha256": sweep.sha256}
            manifest["sweep"] = {**manifest["recipe"], "resolved": sweep.resolved()}
        else:
            manifest["recipe"] = self._recipe_json(self.plan.recipe)
        manifest["recipes"] = {r.name: self._recipe_json(r) for r in self.plan.recipes}
        previous_devices = previous.get("devices", {})
        manifest["devices"] = {
            p.name: {**previous_devices.get(p.name, {}), "profile": p.to_json()} for p in self.plan.profiles
        }
        manifest.update(host=hostinfo.collect(), models={mid: m.to_json() for mid, m in models.items()}, cases=cases)
        return manifest

    def _open_device(self, profile: DeviceProfile) -> tuple[Device | None, dict]:
        """Lock the device, end what earlier runs left there, read its facts. An unreachable or busy device is
        recorded, its cases fail, the run goes on."""
        runtimes = sorted({c.runtime for c in self.plan.cases if c.device == profile.name})
        device = None
        try:
            device = Device(profile, stop=self.stop, on_wait=self._lab_wait)
            notes = device.open(self.run_id)
            found = device.environment(runtimes)
            if any(c.telemetry.get("bandwidth") for c in self.plan.cases if c.device == profile.name):
                found["bandwidth"] = bandwidth.measure(device)  # once a run, before the cases: the roofline's roof
            if device.leased:  # a lab place: held per case from here on (melt/lab/)
                device.pause()
                found["lab"] = lab_record(device)
            return device, {**found, "notes": notes} if notes else found
        except (DeviceBusy, LabError) as e:
            if device is not None:
                device.t.close()
            return None, {"busy": str(e)}
        except (TransportError, MeltError) as e:
            if device is not None:
                device.close()
            return None, {"unreachable": str(e), **({"notes": device.notes} if device and device.notes else {})}

    def _check_resumable(self, models: dict) -> None:
        """One run measures one recipe (or sweep) and one set of model files: a changed one starts a new run."""
        previous = self.run.read()
        problems = []
        asked = self.plan.sweep or self.plan.recipe
        what = "sweep" if self.plan.sweep else "recipe"
        if previous["recipe"]["sha256"] != asked.sha256:
            problems.append(
                Problem(str(asked.path), "", f"the {what} the run started with", f"a changed {what} (sha256 differs)")
            )
        for recipe in self.plan.recipes if self.plan.sweep else []:
            before = previous.get("recipes", {}).get(recipe.name, {}).get("sha256")
            if before and before != recipe.sha256:
                problems.append(
                    Problem(
                        str(recipe.path), "", "the recipe the run started with", "a changed recipe (sha256 differs)"
                    )
                )
        for model_id, model in models.items():
            before = previous.get("models", {}).get(model_id, {}).get("sha256")
            if before and before != model.sha256:
                problems.append(
                    Problem(
                        str(self.plan.recipe.path),
                        f"models[{model_id}]",
                        f"the model file with sha256 {before}",
                        model.sha256,
                    )
                )
        if problems:
            raise InputError(problems, hint=f"Start a new run instead of resuming {self.run_id}.")

    def execute(self) -> Outcome:
        models = self._resolve_models()
        self.feeds = self._plan_feeds(models)
        if self.resume:
            self._check_resumable(models)
        manifest = self._manifest(models)
        self.run.write(manifest)
        outcome = Outcome(self.run.path)
        todo = [c for c in self.plan.cases if manifest["cases"][c.case_id]["status"] != "ok"]
        outcome.skipped = [c.case_id for c in self.plan.cases if c not in todo]
        # set when a case has ended, whatever its status: a case with a quality.reference waits for that case
        self.ended = {c.case_id: threading.Event() for c in self.plan.cases}
        for c in self.plan.cases:
            if c not in todo:
                self.ended[c.case_id].set()
        by_device = {p.name: [c for c in todo if c.device == p.name] for p in self.plan.profiles}
        self.progress("run_start", run_id=self.run_id, run_dir=self.run.path, devices=by_device)
        workers = [
            threading.Thread(
                target=self._device_worker,
                args=(profile, by_device[profile.name], models, manifest, outcome),
                name=f"melt-{profile.name}",
                daemon=True,
            )
            for profile in self.plan.profiles
            if by_device[profile.name]
        ]
        self.workers_left = len(workers)
        if not workers:
            self.all_done.set()
        for w in workers:
            w.start()
        try:
            # Event.wait, not Thread.join: a join interrupted by Ctrl-C can leave is_alive() False
            # while the thread still runs, and its agent would outlive melt.
            while not self.all_done.wait(0.2):
                pass
        except KeyboardInterrupt:
            self.stop.set()
            spawning.kill_all()  # every case's tree on its device, through a second connection
            while not self.all_done.wait(0.2):  # kill what each worker waits on, until all stop
                process.kill_all()
            with self.lock:
                for entry in manifest["cases"].values():
                    if entry["status"] == "running":
                        entry.update(status="failed", reason="interrupted", ended_at=_now())
                manifest.update(status="interrupted", ended_at=_now())
                self.run.write(manifest)
                self.run.write_summary(manifest)
            raise
        statuses = [e["status"] for e in manifest["cases"].values()]
        manifest.update(status="complete" if all(s == "ok" for s in statuses) else "partial", ended_at=_now())
        self.run.write(manifest)
        self.run.write_summary(manifest)
        return outcome

    def _device_worker(self, profile: DeviceProfile, cases: list[Case], models: dict, manifest: dict, outcome) -> None:
        """One device's cases, one at a time. A failure ends the case, never the worker."""
        try:
            self._device_cases(profile, cases, models, manifest, outcome)
        finally:
            with self.lock:
                self.workers_left -= 1
                if self.workers_left == 0:
                    self.all_done.set()

    def _device_cases(self, profile: DeviceProfile, cases: list[Case], models: dict, manifest: dict, outcome) -> None:
        device, device_env = self._open_device(profile)
        with self.lock:
            manifest["devices"][profile.name].update(device_env)
            self.run.write(manifest)
        try:
            for i, case in enumerate(cases):
                if self.stop.is_set():
                    return
                self._one_case(case, i, len(cases), profile, device, device_env, models, manifest, outcome)
        finally:
            if device is not None:
                device.close()

    def _one_case(self, case, i, total, profile, device, device_env, models, manifest, outcome) -> None:
        try:
            self._one_case_inner(case, i, total, profile, device, device_env, models, manifest, outcome)
        finally:
            self.ended[case.case_id].set()

    def _reference(self, case: Case, case_dir: Path, manifest: dict) -> str | None:
        """Hand a case with a quality.reference the log-probabilities its reference case kept (runtime llama_cpp:
        the top-k, kld_base.npz; llama_cpp_cli: llama-perplexity's own file, kld_own.bin, with kld_own.json) into its
        folder, once that case has ended (on another device, maybe); None, or why there are none to hand over
        (the KL figures are then empty with that reason; the rest of the case runs)."""
        ref = case.quality["reference_case"]
        event = self.ended.get(ref)
        while event is not None and not event.wait(0.2):
            if self.stop.is_set():
                return "interrupted while waiting for the reference case"
        kept = [(self.run.case_dir(ref) / src, dst) for src, dst in KLD_BASE_FILES.get(case.runtime, ())]
        if kept and all(src.is_file() for src, _ in kept):
            for src, dst in kept:
                shutil.copyfile(src, case_dir / dst)
            return None
        entry = manifest["cases"].get(ref, {})
        state = f"{entry.get('status')}: {entry.get('reason')}" if entry.get("reason") else entry.get("status", "?")
        return f"the reference case {ref} ({case.quality['reference']}) kept no log-probabilities ({state})"

    def _one_case_inner(self, case, i, total, profile, device, device_env, models, manifest, outcome) -> None:
        runtime_env = device_env.get("runtimes", {}).get(case.runtime, {})
        self.progress("case_start", case=case, index=i + 1, total=total)
        entry = manifest["cases"][case.case_id]
        with self.lock:
            entry.update(status="running", started_at=_now(), ended_at=None, reason=None)
            self.run.write(manifest)
        ended_at = None  # a lab place's case: when it ended on the place, before the place was released
        if "busy" in device_env:
            status, reason = "failed", device_env["busy"]
        elif "unreachable" in device_env:
            status, reason = "failed", f"device {case.device} unreachable: {device_env['unreachable']}"
        elif not runtime_env.get("available", False):
            reason = (
                f"runtime {case.runtime} is not importable on device {case.device}: "
                f"{runtime_env.get('error')}; install it there"
            )
            status = "failed"
        else:
            try:
                # a lab place is held for this case only: the case's window is its hold's (not the wait for it),
                # so that cases of two melts on one place never overlap in run.json
                with device.turn() as held:
                    if held is not None:
                        self._lab_hold(case, entry, device, held, manifest, started_at=_now())
                    status, reason = self._run_case(case, models[case.model_id], device, profile, manifest)
                    ended_at = _now() if held is not None else None
                if held is not None:
                    self._lab_hold(case, entry, device, held, manifest)
            # the link or the device went away, time ran out, or a lab place stayed held by someone else
            except (TransportError, DeadlineExceeded, DeviceBusy, LabError) as e:
                status, reason = "failed", str(e)
            except Exception as e:  # noqa: BLE001 - a bug in one case must not end the other devices' work
                status, reason = "failed", f"melt error: {type(e).__name__}: {e}"
        if self.stop.is_set():
            status, reason = "failed", "interrupted"
        with self.lock:
            entry.update(status=status, ended_at=ended_at or _now(), reason=reason)
            self.run.write(manifest)
            if status == "ok":
                outcome.ok.append(case.case_id)
            else:
                outcome.failed[case.case_id] = reason
        self.progress(
            "case_end", case=case, status=status, reason=reason, index=i + 1, total=total,
            metrics=self.run.metrics(case.case_id) if status == "ok" else None,
        )  # fmt: skip

    def _lab_wait(self, device: str, place: str, how: str) -> None:
        self.progress("lab_wait", device=device, place=place, holder=how)

    def _lab_hold(self, case: Case, entry: dict, device: Device, held, manifest: dict, started_at=None) -> None:
        """run.json: the case's hold of its lab place (place, exporter, reservation token, when), and the device's."""
        with self.lock:
            entry["lab"] = held.to_json()
            if started_at:
                entry["started_at"] = started_at
            manifest["devices"][case.device]["lab"] = lab_record(device)
            self.run.write(manifest)

    def _run_case(
        self, case: Case, model: sources.ResolvedModel, device: Device, profile: DeviceProfile, manifest: dict
    ) -> tuple[str, str | None]:
        """One case under one deadline (protocol.timeout_s): provisioning, the agent, the pull and clean-up all
        take their time from it (melt.deadline). Waiting for a reference case comes before it."""
        case_dir = self.run.case_dir(case.case_id)
        if case_dir.exists():
            shutil.rmtree(case_dir)  # a failed earlier attempt: its partial files would mix with this one
        case_dir.mkdir(parents=True)
        quality = dict(case.quality or {})
        if quality.get("reference_case"):
            missing = self._reference(case, case_dir, manifest)
            if missing:
                quality["reference_missing"] = missing
        deadline = Deadline(case.protocol["timeout_s"])
        case_json = {
            **case.to_json(),
            "quality": quality or None,
            "model_path": device.prepare_model(model, deadline),
            "model_sha256": model.sha256,
            "model_size_bytes": model.size_bytes,
            "sensors_root": profile.spec.sensors.root,
            "sensors": profile.spec.sensors.model_dump(mode="json", exclude_none=True),
        }
        case_json["roofline"] = roofline.case_facts(
            case.runtime,
            model.path,
            profile.spec.limits.model_dump(),
            manifest["devices"][case.device].get("bandwidth"),
            self.gguf_facts,
        )
        if (case.recipe, case.model_id) in self.feeds:
            case_json["feeds"] = self.feeds[(case.recipe, case.model_id)]  # every input: value or random spec
        write_json(case_dir / "case.json", case_json)
        if "prompts" in case.workload:
            shutil.copyfile(self.plan.recipe_of(case).directory / case.workload["prompts"], case_dir / "prompts.jsonl")
        perplexity = (case.quality or {}).get("perplexity")
        if perplexity is not None:  # the text travels with the case, as the prompts do
            text = perplexity.get("text")
            src = self.plan.recipe_of(case).directory / text if text else shipped_text()
            shutil.copyfile(src, case_dir / "perplexity.txt")
        choices = (case.quality or {}).get("choices")
        if choices is not None:
            src = self.plan.recipe_of(case).directory / choices["file"] if choices.get("file") else shipped_choices()
            shutil.copyfile(src, case_dir / "choices.jsonl")
        outputs = (case.quality or {}).get("outputs")
        if outputs is not None:
            shutil.copyfile(self.plan.recipe_of(case).directory / outputs["prompts"], case_dir / "outputs.jsonl")
        exit_ = device.run_case(case.runtime, case_dir, deadline, self.run_id)
        agent_json = case_dir / "agent.json"
        agent = read_json(agent_json) if agent_json.is_file() else {}
        ended = (
            "its processes on the device were ended"
            if exit_.gone
            else "its processes on the device could not be confirmed ended (melt ends them before the next case)"
        )
        if exit_.timed_out:
            return (
                "failed",
                f"timed out after {case.protocol['timeout_s']:g} s (protocol.timeout_s) during {exit_.step}; {ended}",
            )
        if exit_.lost:
            return "failed", f"link lost during {exit_.step}: {exit_.lost}; {ended}"
        if exit_.returncode != 0 or agent.get("status") != "ok":
            reason = agent.get("error") or _exit_reason(exit_.returncode, exit_.log_tail)
            return "failed", reason
        trials = read_trials(case_dir / "trials.jsonl")
        write_json(case_dir / "metrics.json", case_metrics(case_json, trials, agent, read_trace(case_dir)))
        return "ok", None


def _exit_reason(returncode: int | None, log_tail: str) -> str:
    last = log_tail.strip().splitlines()[-1] if log_tail.strip() else "no output"
    if returncode in (-9, 137):
        return f"the agent was killed (SIGKILL: out of memory?): {last}"
    if returncode is not None and returncode < 0:
        return f"the agent died of signal {-returncode}: {last}"
    return f"the agent exited with {returncode}: {last}"


def reanalyse(run_dir: Path) -> None:
    """Re-derive metrics.json and summary.csv from the raw files (no device needed)."""
    run = RunDir(run_dir)
    manifest = run.read()
    for case_id, entry in manifest["cases"].items():
        if entry["status"] != "ok":
            continue
        case_dir = run.case_dir(case_id)
        case = read_json(case_dir / "case.json")
        agent = read_json(case_dir / "agent.json")
        trials = read_trials(case_dir / "trials.jsonl")
        write_json(case_dir / "metrics.json", case_metrics(case, trials, agent, read_trace(case_dir)))
    run.write_summary(manifest)


def execute(
    the_plan: Plan,
    results: Path,
    run_id: str | None = None,
    resume: bool = False,
    progress: Progress = _quiet,
) -> Outcome:
    return Execution(the_plan, results, run_id, resume, progress).execute()


__all__ = ["execute", "reanalyse", "Execution", "Outcome"]
