"""A sweep: several recipes over a pool of devices, as one run (nightly CI's unit of work).

```yaml
name: nightly
devices:                                   # the pool: profile names or paths (relative to this file)
  - local
  - {profile: jetson-orin-nano, tags: [jetson, edge]}
  - {profile: ../lab/pi5.yaml, tags: [edge]}
recipes:                                   # paths relative to this file
  - quickstart.yaml                        # on every device of the pool
  - {recipe: llm-sweep.yaml, tags: [edge]} # only on devices with one of these tags
```

`melt sweep FILE --tag T` narrows the pool to devices carrying a tag. Every case keeps the
case_id it has in a plain `melt run` of its recipe on that device, so a sweep and a run compare.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from melt.devices.profile import DeviceProfile, load_profile
from melt.errors import InputError, Problem
from melt.recipe import Recipe, expand, load_recipe
from melt.schema import Strict, validate
from melt.yamlfile import load

TagList = list[str]


class PoolDevice(Strict):
    profile: str
    tags: TagList = Field(default_factory=list)


class SweepRecipe(Strict):
    recipe: str
    tags: TagList = Field(default_factory=list)  # empty: every device


class SweepSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    devices: list[str | PoolDevice] = Field(min_length=1)
    recipes: list[str | SweepRecipe] = Field(min_length=1)


@dataclass(frozen=True)
class Sweep:
    path: Path
    spec: SweepSpec
    sha256: str

    @property
    def name(self) -> str:
        return self.spec.name

    def resolved(self) -> dict:
        return self.spec.model_dump(mode="json")


def _profile_ref(ref: str, base: Path) -> str:
    """A name from device_profiles/, or a path relative to the sweep file."""
    if "/" in ref or ref.endswith((".yaml", ".yml")):
        return str((base / ref).resolve()) if not Path(ref).is_absolute() else ref
    return ref


def is_sweep_file(path: str | Path) -> bool:
    """A sweep lists recipes; a recipe lists models. (Unreadable files are left to the loader.)"""
    try:
        doc = load(Path(path), "recipe or sweep")
    except InputError:
        return False
    return "recipes" in doc.data and "models" not in doc.data


def load_sweep(path: str | Path) -> Sweep:
    doc = load(Path(path), "sweep")
    spec = validate(SweepSpec, doc)
    return Sweep(Path(path).resolve(), spec, hashlib.sha256(Path(path).read_bytes()).hexdigest())


def plan_sweep(path: str | Path, tags: tuple[str, ...] = ()):
    """Validate the sweep, its recipes and profiles; expand every recipe on its devices. Writes nothing."""
    from melt.run import Plan, check_profiles

    sweep = load_sweep(path)
    base = sweep.path.parent
    pool: list[tuple[DeviceProfile, set[str]]] = []
    problems: list[Problem] = []
    for i, entry in enumerate(sweep.spec.devices):
        device = entry if isinstance(entry, PoolDevice) else PoolDevice(profile=entry)
        try:
            pool.append((load_profile(_profile_ref(device.profile, base)), set(device.tags)))
        except InputError as e:
            problems += [
                Problem(str(sweep.path), f"devices[{i}]", p.expected, f"{p.file}: {p.found}") for p in e.problems
            ]
    if tags:
        unknown = set(tags) - {t for _, ts in pool for t in ts}
        if unknown:
            problems.append(Problem("--tag", "", "a tag of a device in the pool", ", ".join(sorted(unknown))))
        pool = [(p, ts) for p, ts in pool if ts & set(tags)]
    recipes: list[Recipe] = []
    cases = []
    for i, entry in enumerate(sweep.spec.recipes):
        item = entry if isinstance(entry, SweepRecipe) else SweepRecipe(recipe=entry)
        try:
            recipe = load_recipe(base / item.recipe)
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
    check_profiles(profiles)
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
