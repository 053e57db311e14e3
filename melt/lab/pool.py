"""Plan time: which lab places a profile or a sweep's `lab:` block names, checked against the coordinator.

A place's melt device is named after the place (a case_id names the board it ran on); its static facts
(platform, workdir, python, sensors, limits) come from a melt profile chosen, in this order, by the sweep's
`lab.profiles` (place name -> profile), the place's labgrid tag `melt_profile` (a name from
device_profiles/), or the sweep's `lab.profile`. Its transport becomes the place, reached over SSH with the
profile's SSH options.
"""

from __future__ import annotations

from pathlib import Path

from melt.devices.profile import DeviceProfile, LabgridTransport, load_profile
from melt.errors import InputError, Problem
from melt.lab.client import client, coordinator_address

PROFILE_TAG = "melt_profile"


def describe_places(places: dict) -> str:
    """`a (board=tiny, slot=a), b (...)`: the places there are, for messages."""
    if not places:
        return "none"
    return ", ".join(
        f"{name} ({', '.join(f'{k}={v}' for k, v in sorted(p.tags.items()))})" if p.tags else name
        for name, p in sorted(places.items())
    )


def matches(name: str, place, select: dict[str, str]) -> bool:
    """Whether the place carries every tag of `select` (`name` is the place's name, as in labgrid's filters)."""
    return all((name if k == "name" else place.tags.get(k)) == v for k, v in select.items())


def place_problems(profiles: list[DeviceProfile]) -> list[Problem]:
    """One Problem per labgrid profile without a place, or whose place its coordinator does not have."""
    problems = []
    for p in profiles:
        t = p.spec.transport
        if t.kind != "labgrid":
            continue
        if not t.place:
            problems.append(
                Problem(str(p.path), "transport.place", "the name of a place of the lab", "none (only a sweep's "
                        "lab: pool may use a profile without one)")
            )  # fmt: skip
            continue
        places = client(t.coordinator).places()
        if t.place not in places:
            problems.append(
                Problem(
                    str(p.path), "transport.place",
                    f"a place at labgrid coordinator {coordinator_address(t.coordinator)}: {describe_places(places)}",
                    repr(t.place),
                )
            )  # fmt: skip
    return problems


def as_place(base: DeviceProfile, place: str, coordinator: str | None, wait_s: float | None) -> DeviceProfile:
    """The profile `base` for one place: named after the place, reached through it. Raises InputError where
    the profile's transport cannot reach a place (a place's device is reached over SSH)."""
    t = base.spec.transport
    if t.kind == "labgrid":
        transport = t.model_copy(update={"place": place, "coordinator": t.coordinator or coordinator})
    elif t.kind == "ssh":
        transport = LabgridTransport(
            kind="labgrid", place=place, coordinator=coordinator, user=t.user, identity=t.identity,
            host_key_check=t.host_key_check, ssh_config=t.ssh_config, known_hosts=t.known_hosts,
        )  # fmt: skip
    else:
        raise InputError(
            Problem(str(base.path), "transport.kind", "labgrid or ssh for a lab place (reached over SSH)", t.kind)
        )
    if wait_s is not None:
        transport = transport.model_copy(update={"wait_s": wait_s})
    return DeviceProfile(base.path, base.spec.model_copy(update={"name": place, "transport": transport}))


def pool_profiles(lab, sweep_path: Path, profile_ref) -> tuple[list[DeviceProfile], list[Problem]]:
    """The places of a sweep's `lab:` block (melt.sweep.LabPool) as device profiles: every place matching
    `select`, at most `count` of them (the free ones first: those labgrid has neither acquired nor
    reserved, then by name). profile_ref(ref) turns a profile reference of the sweep into a name or path.
    Returns (profiles, problems)."""
    where = str(sweep_path)
    places = client(lab.coordinator).places()
    chosen = sorted(name for name, p in places.items() if matches(name, p, lab.select))
    if not chosen:
        return [], [
            Problem(
                where, "lab.select",
                f"tags some place of labgrid coordinator {coordinator_address(lab.coordinator)} carries; places "
                f"there: {describe_places(places)}",
                ", ".join(f"{k}={v}" for k, v in lab.select.items()) or "{}",
            )
        ]  # fmt: skip
    if lab.count is not None:
        chosen.sort(key=lambda n: (bool(places[n].acquired or places[n].reservation), n))
        chosen = sorted(chosen[: lab.count])
    profiles, problems = [], []
    for name in chosen:
        ref = lab.profiles.get(name) or places[name].tags.get(PROFILE_TAG) or lab.profile
        if not ref:
            problems.append(
                Problem(where, "lab.profile", f"a melt profile for place {name} (lab.profile, lab.profiles.{name}, "
                        f"or the place's tag {PROFILE_TAG})", "none")
            )  # fmt: skip
            continue
        try:
            profiles.append(as_place(load_profile(profile_ref(ref)), name, lab.coordinator, lab.wait_s))
        except InputError as e:
            problems += [Problem(where, f"lab (place {name})", p.expected, f"{p.file}: {p.found}") for p in e.problems]
    return profiles, problems
