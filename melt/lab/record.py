"""What run.json keeps of a device that is a lab place: which place, where it was exported, and the
reservation token of each hold (one hold per case; the case's own entry has its hold's times)."""

from __future__ import annotations


def lab_record(device) -> dict:
    """{"place", "coordinator", "exporter", "exporter_host", "address", "port", "tokens": [one per hold]} for a
    Device whose transport is a lab place (melt.lab.transport.PlaceTransport)."""
    spec = device.t.spec
    last = device.holds[-1] if device.holds else None
    return {
        "place": spec.place,
        "coordinator": last.coordinator if last else spec.coordinator,
        "exporter": last.exporter if last else None,
        "exporter_host": last.exporter_host if last else None,
        "address": last.address if last else None,
        "port": last.port if last else None,
        "tokens": [h.token for h in device.holds],
    }
