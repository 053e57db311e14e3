"""`melt lab places | reserve | release`: the lab as a person at a desk sees it, through the same labgrid
reservations and holds that melt's runs use (so CI and people never share a board unknowingly)."""

from __future__ import annotations

from melt.devices.profile import available_profiles, load_profile
from melt.errors import InputError, MeltError
from melt.lab import lease
from melt.lab.client import LabError, Who, client
from melt.lab.pool import PROFILE_TAG


def _profiles_by_place() -> dict[str, list[str]]:
    """Place name -> the shipped profiles (device_profiles/) that name it."""
    found: dict[str, list[str]] = {}
    for name in available_profiles():
        try:
            t = load_profile(name).spec.transport
        except (InputError, MeltError):
            continue
        if t.kind == "labgrid" and t.place:
            found.setdefault(t.place, []).append(name)
    return found


def places(coordinator: str | None = None) -> list[dict]:
    """Every place of the lab: {"place", "tags", "held": {"how": acquired|reserved, "by": labgrid's host/user,
    "who": in words} or None, "resources": ["exporter/group/class/name", ...], "profiles": the melt profiles
    that map to it (shipped profiles naming it, its melt_profile tag)}, by name."""
    c = client(coordinator, person=True)
    by_place = _profiles_by_place()
    rows = []
    for name, p in sorted(c.places().items()):
        has = lease.holder(c, name)
        profiles = list(by_place.get(name, []))
        if p.tags.get(PROFILE_TAG) and p.tags[PROFILE_TAG] not in profiles:
            profiles.append(p.tags[PROFILE_TAG])
        rows.append(
            {
                "place": name,
                "tags": dict(p.tags),
                "held": None if has is None else {"how": has[1], "by": has[0].name, "who": has[0].describe()},
                "matches": [str(m) for m in p.matches],
                "profiles": profiles,
            }
        )
    return rows


def reserve(place: str, coordinator: str | None = None, wait_s: float = 0.0) -> lease.Held:
    """Hold a place as this user (labgrid's plain host/user, as labgrid-client does): it stays held after melt
    exits, until `melt lab release`. Waits at most wait_s for it. Raises PlaceBusy naming the holder, LabError."""
    return lease.take(client(coordinator, person=True), place, wait_s)


def release(place: str, coordinator: str | None = None, kick: bool = False) -> str:
    """Release a place this user holds; kick=True: whoever holds it (labgrid-client release --kick). Also cancels
    the reservation the place is allocated to where it is this user's (or kick). Returns what was done."""
    c = client(coordinator, person=True)
    p = c.places().get(place)
    if p is None:
        raise LabError(f"labgrid coordinator {c.address} has no place {place!r}")
    has = lease.holder(c, place)
    if has is None:
        return f"place {place} is not held"
    who, how = has
    if who.name != c.who.name and not kick:
        raise LabError(
            f"place {place} is {how} by {who.describe()} ({who.name}), not by you; --kick releases it anyway"
        )
    from labgrid.remote.generated import labgrid_coordinator_pb2 as pb

    if p.acquired:
        c.call("ReleasePlace", pb.ReleasePlaceRequest(placename=place))
    if p.reservation:
        try:
            c.call("CancelReservation", pb.CancelReservationRequest(token=p.reservation))
        except LabError:
            pass  # expired meanwhile
    return f"released place {place}" + ("" if who.name == c.who.name else f" (was {how} by {Who.describe(who)})")
