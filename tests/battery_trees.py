"""Generated /sys/class/power_supply trees for the battery tests: the issue's phone and laptop, and the
other forms drivers give (mA/mV, power_now only, two supplies with opposite signs, an ACPI pack).

Each DEVICE is written from true values (A, V, W) encoded in the units its driver writes, with the
values a reader must get back; a test asserts those, not the raw numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ACPI_BATTERY = "sys/devices/LNXSYSTM:00/LNXSYBUS:00/PNP0C0A:00"  # where the ACPI battery device sits


@dataclass
class Device:
    supplies: dict[str, dict[str, str]]  # supply name -> files (type, current_now, ...)
    pins: dict = field(default_factory=dict)  # the profile's sensors.battery
    current_a: float | None = None  # what battery.current_a must read (positive = discharging)
    voltage_v: float | None = None
    power_w: float | None = None
    notes: tuple[str, ...] = ()  # text the sensors.json notes must hold (the decision and why)
    acpi: tuple[str, ...] = ()  # supplies whose device is an ACPI battery (PNP0C0A)
    platform: str = "android"


DEVICES = {
    # the issue: a phone drawing a few mA, in uA as the kernel documents
    "phone-few-ma": Device(
        {"usb": {"type": "USB", "online": "0"},
         "battery": {"type": "Battery", "status": "Discharging", "current_now": "-4306", "voltage_now": "3870000",
                     "temp": "312"}},
        current_a=0.004306, voltage_v=3.87, power_w=0.004306 * 3.87,
        notes=("battery supply battery:", "current_now unit uA (kernel ABI)", "voltage_now unit uV (kernel ABI)",
               "discharge sign negative (evidence)"),
    ),
    # the issue: a 3S laptop pack at 12.6 V, ACPI (magnitudes only)
    "laptop-3s": Device(
        {"AC": {"type": "Mains", "online": "0"},
         "BAT0": {"type": "Battery", "status": "Discharging", "current_now": "756000", "voltage_now": "12600000"}},
        current_a=0.756, voltage_v=12.6, power_w=0.756 * 12.6, acpi=("BAT0",), platform="linux",
        notes=("battery supply BAT0:", "current_now unit uA (kernel ABI)", "voltage_now unit uV (kernel ABI)",
               "discharge sign magnitude (driver)"),
    ),
    # an ACPI laptop whose battery reports energy: power_now (uW), no current_now
    "laptop-power-now": Device(
        {"ACAD": {"type": "Mains", "online": "0"},
         "BAT1": {"type": "Battery", "status": "Discharging", "power_now": "9525600", "voltage_now": "12600000",
                  "energy_now": "41000000"}},
        current_a=None, voltage_v=12.6, power_w=9.5256, acpi=("BAT1",), platform="linux",
        notes=("current_now unit not used (none)", "power_now unit uW (kernel ABI)"),
    ),
    # an old vendor driver writing mA and mV, positive while discharging: units and sign from evidence
    "phone-ma-mv": Device(
        {"battery": {"type": "Battery", "status": "Discharging", "current_now": "850", "voltage_now": "3850"}},
        current_a=0.85, voltage_v=3.85, power_w=0.85 * 3.85,
        notes=("current_now unit mA (evidence)", "voltage_now unit mV (evidence)",
               "discharge sign positive (evidence)"),
    ),
    # two Battery supplies of one phone with opposite signs; the profile pins the fuel gauge
    "phone-two-supplies": Device(
        {"battery": {"type": "Battery", "status": "Discharging", "current_now": "1202147", "voltage_now": "4137440"},
         "bms": {"type": "Battery", "status": "Discharging", "current_now": "-1202147", "voltage_now": "4137440",
                 "temp": "360"},
         "hid-stylus-battery": {"type": "Battery", "scope": "Device", "current_now": "-5000"}},
        pins={"supply": "bms"},
        current_a=1.202147, voltage_v=4.13744, power_w=1.202147 * 4.13744,
        notes=("battery supply bms: pinned by the profile",
               "supply battery (type Battery, not used): current_now 1202147", "discharge sign negative (evidence)"),
    ),
    # a 4S handheld whose driver writes mA, pinned in the profile; the 16.8 V pack in uV
    "handheld-4s-ma-pinned": Device(
        {"battery": {"type": "Battery", "status": "Discharging", "current_now": "-2500", "voltage_now": "16800000"}},
        pins={"current_unit": "mA"},
        current_a=2.5, voltage_v=16.8, power_w=2.5 * 16.8, platform="linux",
        notes=("current_now unit mA (profile pin)", "voltage_now unit uV (kernel ABI)"),
    ),
}  # fmt: skip


def write_tree(root: Path, device: Device) -> Path:
    """The device's power_supply folders under root (ACPI device links included); returns root."""
    for name, files in device.supplies.items():
        folder = root / "sys" / "class" / "power_supply" / name
        folder.mkdir(parents=True)
        for key, value in files.items():
            (folder / key).write_text(value + "\n")
        if name in device.acpi:
            target = root / ACPI_BATTERY
            target.mkdir(parents=True, exist_ok=True)
            (folder / "device").symlink_to(target)
    return root


def write_profile(folder: Path, name: str, root: Path, device: Device) -> Path:
    """A device profile with transport local and the tree as sensors.root."""
    pins = "".join(f", {k}: {v}" for k, v in device.pins.items())
    battery = f", battery: {{{pins[2:]}}}" if pins else ""
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nplatform: {device.platform}\ntransport: {{kind: local}}\nsensors: {{root: {root}{battery}}}\n"
    )
    return path
