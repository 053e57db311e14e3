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

A pool may also be places of a labgrid lab (melt/lab/), beside or instead of `devices`:

```yaml
lab:
  coordinator: 127.0.0.1:20408             # else LG_COORDINATOR, as labgrid's own tools read it
  select: {board: jetson-orin-nano}        # labgrid tags a place must carry (`name`: the place's name)
  count: 2                                 # at most this many places (the free ones first); absent: all
  profile: jetson-orin-nano                # the places' static facts (or lab.profiles: {PLACE: profile},
                                           # or the place's labgrid tag melt_profile)
  tags: [edge]                             # the pool's tags, for recipes' `tags`
  wait_s: 600                              # how long a case waits for a place someone else holds
```

Each place is a device named after the place, with its own queue of cases; a place is held (labgrid
reservation, then acquire) for one case at a time, so two sweeps that want one place take turns on it, in
the order labgrid's reservation scheduler gives it.

`melt sweep FILE --tag T` narrows the pool to devices carrying a tag. Every case keeps the
case_id it has in a plain `melt run` of its recipe on that device, so a sweep and a run compare.

This module is the file's schema; melt/plan.py plans a sweep (profiles, recipes, cases, capability checks).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field

from melt.errors import InputError
from melt.schema import Strict, validate
from melt.yamlfile import load

TagList = list[str]


class PoolDevice(Strict):
    profile: str
    tags: TagList = Field(default_factory=list)


class SweepRecipe(Strict):
    recipe: str
    tags: TagList = Field(default_factory=list)  # empty: every device


class LabPool(Strict):
    """Places of a labgrid lab as the sweep's pool (melt/lab/pool.py)."""

    coordinator: str | None = None
    select: dict[str, str] = Field(default_factory=dict)
    count: int | None = Field(default=None, ge=1)
    profile: str | None = None
    profiles: dict[str, str] = Field(default_factory=dict)
    tags: TagList = Field(default_factory=list)
    wait_s: float | None = Field(default=None, ge=0)


class SweepSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    devices: list[str | PoolDevice] = Field(default_factory=list)  # with `lab`, may be empty
    lab: LabPool | None = None
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

    def pool(self) -> list[PoolDevice]:
        """The pool in file order, each device in its long form, its profile a name from device_profiles/
        or an absolute path (a path in the file is relative to the file)."""
        entries = [e if isinstance(e, PoolDevice) else PoolDevice(profile=e) for e in self.spec.devices]
        return [PoolDevice(profile=_profile_ref(e.profile, self.path.parent), tags=e.tags) for e in entries]

    def recipe_entries(self) -> list[SweepRecipe]:
        """The recipes in file order, each in its long form, its path absolute."""
        entries = [e if isinstance(e, SweepRecipe) else SweepRecipe(recipe=e) for e in self.spec.recipes]
        return [SweepRecipe(recipe=str(self.path.parent / e.recipe), tags=e.tags) for e in entries]


def profile_ref_in(sweep: Sweep):
    """ref -> a profile name or absolute path, for references written in the sweep file."""
    return lambda ref: _profile_ref(ref, sweep.path.parent)


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
