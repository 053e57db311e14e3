"""The battery probe: the system's battery among /sys/class/power_supply/* on Android phones and
Linux laptops or handhelds. Parsing and the unit/sign decision live in android_battery.py."""

from __future__ import annotations

from melt.telemetry import android_battery
from melt.telemetry.base import Detection, Probe

UNIT_PINS = ("current_unit", "voltage_unit", "discharge_sign")


class AndroidBatteryProbe(Probe):
    """Battery output while discharging: |I| x V (or power_now) of the supply choose_supply picks.

    detect() chooses the supply and decides its units and sign rule once (android_battery.decide),
    from the profile's sensors.battery pins, else the kernel ABI, else the evidence of its reading;
    sample() reads every tick with that plan. The decision and its evidence are the detection's notes.
    """

    name = "android_battery"

    def detect(self) -> Detection:
        d = Detection(self.name)
        pins = self.sensors.get("battery") or {}
        supply, notes, missing = android_battery.choose_supply(self.root, pins.get("supply"))
        d.notes += notes
        d.missing += missing
        if supply is None:
            return d
        raw = android_battery.read_supply(supply)
        self.supply = supply
        self.plan = android_battery.decide(
            [raw], **{k: pins.get(k) for k in UNIT_PINS}, driver=android_battery.driver_of(supply)
        )
        reading = self.plan.read(raw)
        d.found.append(supply)
        d.notes += [*self.plan.notes, *(f"first reading: {n}" for n in reading.notes)]
        d.channels = []
        if self.plan.current.value:
            d.channels.append("battery.current_a")
        if self.plan.voltage.value:
            d.channels.append("battery.voltage_v")
        if "temp" in raw:
            d.channels.append("battery.temp_c")
        d.channels.append("battery.charging")
        if self.plan.gives_power:
            d.channels += ["battery.power_w", "power.total_w"]
            d.power_total, d.power_method = "power.total_w", "battery"
            d.notes.append(
                "power.total_w: battery output while it discharges (|current_now| x voltage_now, else power_now); "
                "empty while charging or idle on external power"
            )
        else:
            d.missing.append(f"{supply}: neither current_now with voltage_now nor power_now usable: no battery power")
        return d

    def sample(self) -> dict[str, float]:
        reading = self.plan.read(android_battery.read_supply(self.supply))
        values = reading.values()
        values["battery.charging"] = float(reading.charging)
        if reading.power_w is not None:
            values["power.total_w"] = reading.power_w
        return values
