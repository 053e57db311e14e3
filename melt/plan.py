"""Planning: from a recipe (or a sweep) and device profiles to the list of cases to run, checked.

Everything here validates and expands; nothing is written, pushed or started. A plan is refused (InputError,
exit 2) when a file is bad, a profile is unusable, or a device cannot run a runtime a case needs
(melt/devices/capability.py). melt/run.py executes a plan.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from melt.devices import capability
from melt.devices.profile import DeviceProfile, load_profile
from melt.errors import InputError, Problem
from melt.recipe import Case, Recipe, expand, load_recipe
from melt.sweep import Sweep, load_sweep
from melt.yamlfile import load

SUPPORTED_TRANSPORTS = ("local", "ssh", "adb", "labgrid")


@dataclass(frozen=True)
class Plan:
    """What a run will do: its recipes, devices and cases (in run order), and the sweep they came from."""

    recipes: list[Recipe]
    profiles: list[DeviceProfile]
    cases: list[Case]
    sweep: Sweep | None = None  # several recipes over a pool of devices

    @property
    def recipe(self) -> Recipe:
        return self.recipes[0]

    @property
    def name(self) -> str:
        return self.sweep.name if self.sweep else self.recipe.name

    def recipe_of(self, case: Case) -> Recipe:
        return next(r for r in self.recipes if r.name == case.recipe)

    def only(self, case_ids: list[str] | tuple[str, ...]) -> Plan:
        """The plan narrowed to these cases (e.g. to confirm a regression by running them again).
        Raises InputError naming the ids that are not cases of this plan."""
        if not case_ids:
            return self
        known = {c.case_id for c in self.cases}
        unknown = [c for c in case_ids if c not in known]
        if unknown:
            raise InputError(Problem("--case", "", "case ids of this plan (see `melt validate`)", ", ".join(unknown)))
        return replace(self, cases=[c for c in self.cases if c.case_id in set(case_ids)])


def capability_problems(profiles: list[DeviceProfile], cases: list[Case]) -> list[Problem]:
    """One Problem per (device, runtime) pair whose cases the device cannot run, in case order: the profile
    file, the key to set (at its line where the profile writes it), what is needed and what the profile says."""
    by_name = {p.name: p for p in profiles}
    counts = Counter((c.device, c.runtime) for c in cases)  # insertion order: the cases' order
    problems = []
    for (device, runtime), n in counts.items():
        profile = by_name[device]
        problem = capability.problem(profile, runtime, n)
        if problem is not None:  # the key's line, where the profile writes it (python: false)
            problems.append(replace(problem, line=load(profile.path, "device profile").line_of((problem.key,))))
    return problems


def check_profiles(profiles: list[DeviceProfile], cases: list[Case] | tuple[Case, ...] = ()) -> None:
    """The devices of a plan: a supported transport, each device once, and able to run every case planned on
    it. Raises InputError with every problem found."""
    problems = []
    seen = set()
    for p in profiles:
        if p.spec.transport.kind not in SUPPORTED_TRANSPORTS:
            problems.append(
                Problem(
                    str(p.path),
                    "transport.kind",
                    f"one of {list(SUPPORTED_TRANSPORTS)}",
                    repr(p.spec.transport.kind),
                )
            )
        if p.name in seen:
            problems.append(Problem(str(p.path), "name", "each device once", f"{p.name!r} twice"))
        seen.add(p.name)
    if any(p.spec.transport.kind == "labgrid" for p in profiles):  # the lab's places exist (melt/lab/pool.py)
        from melt.lab.pool import place_problems

        problems += place_problems(profiles)
    if problems:  # before the capabilities: two profiles of one name would mix their cases up
        raise InputError(problems)
    problems = capability_problems(profiles, list(cases))
    if problems:
        raise InputError(problems, hint="Set that key in the device's profile, or plan those cases on another device.")


def plan(recipe_path: str | Path, devices: list[str] | tuple[str, ...] = ()) -> Plan:
    """Validate the recipe and the profiles (default device: local), expand the matrix, and check that each
    device can run the runtimes of its cases. Raises InputError; writes nothing."""
    recipe = load_recipe(recipe_path)
    profiles = [load_profile(d) for d in (devices or ["local"])]
    cases = expand(recipe, [p.name for p in profiles])
    check_profiles(profiles, cases)
    return Plan([recipe], profiles, cases)


def plan_sweep(path: str | Path, tags: tuple[str, ...] = ()) -> Plan:
    """Validate the sweep, its recipes and profiles; expand every recipe on its devices (narrowed to the pool's
    devices with one of `tags`, where given); check that each device can run its cases. Raises InputError with
    every problem found; writes nothing."""
    sweep = load_sweep(path)
    pool: list[tuple[DeviceProfile, set[str]]] = []
    problems: list[Problem] = []
    for i, device in enumerate(sweep.pool()):
        try:
            pool.append((load_profile(device.profile), set(device.tags)))
        except InputError as e:
            problems += [
                Problem(str(sweep.path), f"devices[{i}]", p.expected, f"{p.file}: {p.found}") for p in e.problems
            ]
    if sweep.spec.lab is not None:  # places of a labgrid lab (melt/lab/pool.py)
        from melt.lab.pool import pool_profiles
        from melt.sweep import profile_ref_in

        places, found = pool_profiles(sweep.spec.lab, sweep.path, profile_ref_in(sweep))
        pool += [(p, set(sweep.spec.lab.tags)) for p in places]
        problems += found
    elif not sweep.spec.devices:
        problems.append(Problem(str(sweep.path), "devices", "a pool: devices, or a lab: block", "neither"))
    if tags:
        unknown = set(tags) - {t for _, ts in pool for t in ts}
        if unknown:
            problems.append(Problem("--tag", "", "a tag of a device in the pool", ", ".join(sorted(unknown))))
        pool = [(p, ts) for p, ts in pool if ts & set(tags)]
    recipes: list[Recipe] = []
    cases = []
    for i, item in enumerate(sweep.recipe_entries()):
        try:
            recipe = load_recipe(item.recipe)
        except InputError as e:
            problems += e.problems
            continue
        if any(r.name == recipe.name for r in recipes):
            problems.append(Problem(str(sweep.path), f"recipes[{i}]", "recipes with distinct names", recipe.name))
            continue
        recipes.append(recipe)
        on = [p.name for p, ts in pool if not item.tags or ts & set(item.tags)]
        cases += expand(recipe, on)
    problems += _model_clashes(recipes)
    if problems:
        raise InputError(problems)
    profiles = [p for p, _ in pool]
    check_profiles(profiles, cases)
    if not cases:
        raise InputError(Problem(str(sweep.path), "devices", "at least one device for some recipe", "no cases"))
    return Plan(recipes, profiles, cases, sweep)


def _model_clashes(recipes: list[Recipe]) -> list[Problem]:
    """A model id names one model in a run: results, catalog and report key models by id."""
    seen: dict[str, tuple[str, dict]] = {}
    problems = []
    for recipe in recipes:
        for model in recipe.spec.models:
            source = model.source.model_dump(mode="json", exclude_none=True)
            if model.id in seen and seen[model.id][1] != source:
                problems.append(
                    Problem(
                        str(recipe.path),
                        f"models[{model.id}].source",
                        f"the same source as model {model.id!r} in recipe {seen[model.id][0]!r}",
                        str(source),
                    )
                )
            seen.setdefault(model.id, (recipe.name, source))
    return problems
