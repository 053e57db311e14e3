"""One place, held for a while: reserve, wait, take over from a melt that is gone, acquire, resolve, release.

Every step is labgrid's own coordinator call (labgrid/remote/coordinator.py), the ones labgrid-client makes:

- reserve: CreateReservation(filters {"main": {"name": PLACE}}) (`labgrid-client reserve name=PLACE`)
- wait: PollReservation(token) until allocated, which also keeps it alive (`labgrid-client wait TOKEN`)
- take over: ReleasePlace(place, fromuser=HOLDER) and CancelReservation(its token)
  (`labgrid-client -p PLACE release-from HOLDER`, `labgrid-client cancel-reservation TOKEN`)
- acquire: AcquirePlace(place), allowed only to the reservation's owner (`labgrid-client -p +TOKEN acquire`)
- resolve: the place's acquired NetworkService resource: address, username, port; extra.proxy is the
  exporter's host (`labgrid-client -p PLACE show`)
- release: ReleasePlace(place, fromuser=melt) and CancelReservation(token) (`labgrid-client -p PLACE release`)

Who waits for a place, and in which order they get it, is labgrid's reservation scheduler (oldest waiting
reservation first, by priority): a melt that releases a place and reserves it again for its next case queues
behind one that was already waiting, so two melts wanting one place alternate case by case.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone

from melt.deadline import Deadline
from melt.lab.client import LabClient, LabError, Who

POLL_S = 0.2


class PlaceBusy(LabError):
    """The place stayed held by someone else for the whole wait; the message names the holder."""


class LeaseInterrupted(LabError):
    """melt was stopped (Ctrl-C) while waiting for the place."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class Held:
    """A place melt holds: where its device is (its NetworkService), who exported it, under which reservation."""

    place: str
    coordinator: str
    token: str
    exporter: str  # the exporter's name at the coordinator
    exporter_host: str  # the exporter's host (the resource's proxy), which reaches the device
    address: str
    port: int
    username: str
    acquired_at: str = field(default_factory=_now)
    released_at: str | None = None
    notes: list[str] = field(default_factory=list)  # places taken over from melts that are gone

    def to_json(self) -> dict:
        return {
            "place": self.place, "coordinator": self.coordinator, "token": self.token, "exporter": self.exporter,
            "exporter_host": self.exporter_host, "address": self.address, "port": self.port,
            "acquired_at": self.acquired_at, "released_at": self.released_at,
            **({"notes": self.notes} if self.notes else {}),
        }  # fmt: skip


def _pb():
    from labgrid.remote.generated import labgrid_coordinator_pb2

    return labgrid_coordinator_pb2


def reservations(client: LabClient) -> list:
    """Every reservation at the coordinator (labgrid.remote.common.Reservation: owner, token, state, ...)."""
    from labgrid.remote.common import Reservation

    answer = client.call("GetReservations", _pb().GetReservationsRequest())
    return [Reservation.from_pb2(r) for r in answer.reservations]


def holder(client: LabClient, place: str) -> tuple[Who, str] | None:
    """Who has the place and how ("acquired", or "reserved": allocated to a reservation not yet acquired), or
    None when it is free."""
    p = client.places().get(place)
    if p is None:
        return None
    if p.acquired:
        return Who.parse(p.acquired), "acquired"
    if p.reservation:
        for r in reservations(client):
            if r.token == p.reservation:
                return Who.parse(r.owner), "reserved"
    return None


def take_over(client: LabClient, place: str) -> list[str]:
    """Free the place from melts on this host that are no longer running: cancel their reservations of it, then
    release it where one of them acquired it (ReleasePlace with fromuser: only while that melt still holds it).
    Returns a note per thing done. (Cancel first: labgrid's scheduler then sees the place free when the
    release runs it, and allocates the place to the oldest waiting reservation at once.)"""
    notes = []
    for r in reservations(client):
        who = Who.parse(r.owner)
        mine = r.allocations.get("main") == [place] or r.filters.get("main") == {"name": place}
        if mine and who.alive_here() is False:
            try:
                client.call("CancelReservation", _pb().CancelReservationRequest(token=r.token))
                notes.append(f"cancelled reservation {r.token} of {who.describe()}, which is no longer running")
            except LabError:
                pass  # cancelled meanwhile by another melt taking over
    p = client.places().get(place)
    if p is not None and p.acquired:
        who = Who.parse(p.acquired)
        if who.alive_here() is False:
            client.call("ReleasePlace", _pb().ReleasePlaceRequest(placename=place, fromuser=p.acquired))
            notes.insert(
                0,
                f"took over place {place}: it was acquired by {who.describe()}, which is no longer running "
                "(released with labgrid's release-from)",
            )
    return notes


def _nudge(client: LabClient) -> None:
    """Make labgrid's scheduler run now. It runs on every reservation or place change and every 15 s, but a
    place whose reservation was cancelled is offered again only on its next run; a reservation that matches no
    place, made and cancelled at once, is such a run (and changes no one's place in the queue)."""
    pb = _pb()
    request = pb.CreateReservationRequest(filters={"main": pb.Reservation.Filter(filter={"melt_nudge": "none"})})
    _cancel(client, client.call("CreateReservation", request).reservation.token)


def _reserve(client: LabClient, place: str) -> str:
    pb = _pb()
    request = pb.CreateReservationRequest(filters={"main": pb.Reservation.Filter(filter={"name": place})}, prio=0.0)
    return client.call("CreateReservation", request).reservation.token


def _poll(client: LabClient, token: str):
    from labgrid.remote.common import Reservation

    return Reservation.from_pb2(client.call("PollReservation", _pb().PollReservationRequest(token=token)).reservation)


def _cancel(client: LabClient, token: str) -> None:
    try:
        client.call("CancelReservation", _pb().CancelReservationRequest(token=token))
    except LabError:
        pass  # already gone (expired, or cancelled by a melt that took over)


def take(client: LabClient, place: str, wait_s: float, stop: threading.Event | None = None, on_wait=None) -> Held:
    """Hold `place` for this melt: reserve it, wait at most wait_s seconds for labgrid to allocate it (taking
    it over from a melt on this host that is gone), acquire it and read its NetworkService.

    on_wait(holder_description), where given, is called once when the place turns out to be held by someone
    else. Raises PlaceBusy naming the holder when the wait ends, LeaseInterrupted when `stop` is set, LabError
    when the place does not exist, cannot be acquired or has no NetworkService."""
    from labgrid.remote.common import ReservationState

    if place not in client.places():
        raise LabError(
            f"labgrid coordinator {client.address} has no place {place!r}; places there: "
            + (", ".join(sorted(client.places())) or "none")
        )
    deadline = Deadline(wait_s)
    notes: list[str] = []
    token = _reserve(client, place)
    told = False
    try:
        while True:
            res = _poll(client, token)
            if res.state in (ReservationState.allocated, ReservationState.acquired):
                break
            if res.state in (ReservationState.expired, ReservationState.invalid):
                _cancel(client, token)
                token = _reserve(client, place)
                continue
            notes += take_over(client, place)
            has = holder(client, place)
            if has is not None and has[0].name == client.who.name:
                if deadline.expired():  # this melt holds it under another reservation: a hold not released
                    raise PlaceBusy(f"place {place} is {has[1]} by this melt itself ({has[0].name}), not released")
            elif has is not None and has[0].alive_here() is not False:
                if on_wait is not None and not told:
                    on_wait(f"{has[1]} by {has[0].describe()}")
                    told = True
                if deadline.expired():
                    who, how = has
                    raise PlaceBusy(
                        f"place {place} is {how} by {who.describe()} (labgrid: {who.name}); waited {wait_s:g} s "
                        f"for it at coordinator {client.address}; wait for it, or ask its holder to release it"
                    )
            else:  # free, yet not allocated to us: labgrid has not rescheduled since it was freed
                _nudge(client)
                if _poll(client, token).state in (ReservationState.allocated, ReservationState.acquired):
                    break
                if deadline.expired():
                    raise PlaceBusy(f"place {place} was not allocated within {wait_s:g} s at {client.address}")
            if stop is not None and stop.wait(POLL_S):
                raise LeaseInterrupted(f"interrupted while waiting for place {place}")
            if stop is None:
                threading.Event().wait(POLL_S)
        client.call("AcquirePlace", _pb().AcquirePlaceRequest(placename=place))
    except BaseException:
        _cancel(client, token)
        raise
    try:
        held = _resolve(client, place, token)
    except BaseException:
        release(client, place, token)
        raise
    held.notes = notes
    return held


def _resolve(client: LabClient, place: str, token: str) -> Held:
    p = client.places()[place]
    found = []
    for path in p.acquired_resources:
        data = client.resource(path) or {}
        found.append(f"{'/'.join(path)}")
        if data.get("cls") == "NetworkService":
            params = data.get("params", {})
            extra = params.get("extra") or {}  # labgrid keeps the exporter's proxy host among the params
            if extra.get("proxy_required"):
                raise LabError(
                    f"place {place}: its NetworkService {'/'.join(path)} ({params.get('address')}) is reachable only "
                    f"through its exporter's host {extra.get('proxy')} (labgrid's proxy); melt does not go through "
                    "exporter proxies: export an address this machine reaches"
                )
            return Held(
                place=place, coordinator=client.address, token=token, exporter=path[0],
                exporter_host=extra.get("proxy") or path[0], address=params["address"],
                port=int(params.get("port", 22)), username=params.get("username") or "",
            )  # fmt: skip
    raise LabError(
        f"place {place} has no NetworkService resource (acquired: {', '.join(found) or 'nothing'}); melt reaches a "
        "place's device over SSH: export a NetworkService and add-match it to the place"
    )


def release(client: LabClient, place: str, token: str) -> None:
    """Release the place if this melt still holds it, and cancel the reservation (labgrid then allocates the
    place to the oldest waiting reservation)."""
    _cancel(client, token)  # first: the release below then lets labgrid's scheduler offer the place at once
    client.call("ReleasePlace", _pb().ReleasePlaceRequest(placename=place, fromuser=client.who.name))
