"""Device profile schema: how to reach a device, what it is, where its sensors are, its limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BeforeValidator, Field

from melt.agent.environment import check_pass
from melt.errors import InputError, Problem
from melt.schema import Strict, validate
from melt.yamlfile import load

PROFILES_DIR = Path(__file__).resolve().parents[2] / "device_profiles"


class LocalTransport(Strict):
    kind: Literal["local"]


class SshTransport(Strict):
    kind: Literal["ssh"]
    host: str
    user: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    identity: str | None = None
    host_key_check: Literal["strict", "accept-new"] = "strict"  # never off
    ssh_config: str | None = None  # an ssh_config file (-F), else the user's ~/.ssh/config
    known_hosts: str | None = None  # a known_hosts file, else the user's


class AdbTransport(Strict):
    kind: Literal["adb"]
    serial: str
    # HOST:PORT of an adb server on another host (started there with `adb -a`), reached with `adb -H -P`; absent:
    # this machine's server
    server: Annotated[str, Field(pattern=r"^[^\s:]+:\d+$")] | None = None


class LabgridTransport(Strict):
    """A place of a labgrid lab (melt/lab/): reserved and acquired per case, its NetworkService reached over SSH
    with the options below (the address, port and user come from the place)."""

    kind: Literal["labgrid"]
    place: Annotated[str, Field(min_length=1)] | None = None  # absent only in a profile a sweep's `lab:` pool uses
    coordinator: str | None = None  # HOST:PORT; else LG_COORDINATOR, as labgrid's own tools read it
    wait_s: Annotated[float, Field(ge=0)] = 600.0  # how long to wait for a place someone else holds
    user: str | None = None  # else the NetworkService's username
    identity: str | None = None
    host_key_check: Literal["strict", "accept-new"] = "strict"  # never off
    ssh_config: str | None = None
    known_hosts: str | None = None
    # a phone: the place's NetworkService is its exporter host's adb server (`adb -a`, port 5037 by default), and
    # the phone with this serial is reached through it (`adb -H -P -s`), as an adb device; absent: SSH
    adb_serial: str | None = None


def reach_kind(transport) -> str:
    """How a device is reached, as the defaults that follow from it see it (workdir, Python): a labgrid place with
    an adb_serial is a phone ("adb"); otherwise the transport's kind."""
    if transport.kind == "labgrid" and getattr(transport, "adb_serial", None):
        return "adb"
    return transport.kind


Transport = Annotated[
    Union[LocalTransport, SshTransport, AdbTransport, LabgridTransport], Field(discriminator="kind")  # noqa: UP007
]


class Battery(Strict):
    """Overrides of what melt decides from the kernel ABI and the readings (melt/telemetry/android_battery.py)."""

    supply: Annotated[str, Field(pattern=r"^[^/]+$")] | None = None  # a /sys/class/power_supply name: bms, BAT0
    current_unit: Literal["uA", "mA", "A"] | None = None
    voltage_unit: Literal["uV", "mV", "V"] | None = None
    discharge_sign: Literal["negative", "positive"] | None = None


class Sensors(Strict):
    root: str = "/"
    tegrastats: str | None = None
    vcgencmd: str | None = None
    power_total: str | None = None
    battery: Battery | None = None


class Limits(Strict):
    """A device's datasheet figures: shown beside what melt measures (melt.analysis.roofline)."""

    mem_bandwidth_gbs: Annotated[float, Field(gt=0)] | None = None  # peak memory bandwidth, GB/s (1e9 bytes/s)
    tdp_w: Annotated[float, Field(gt=0)] | None = None
    peak_gflops: Annotated[float, Field(gt=0)] | None = None  # peak compute of the CPU cores melt runs on, GFLOP/s


def _python_value(value: Any) -> Any:
    """python: a path or command (a non-empty string), false (the device has none), or absent."""
    if value is None or value is False or (isinstance(value, str) and value.strip()):
        return value
    raise ValueError("a path or command of a Python 3.10+ on the device, or false (the device has no Python)")


def _folder_value(value: Any) -> Any:
    if isinstance(value, str) and value.strip():
        return value
    raise ValueError("a folder on the device (a non-empty string)")


class ProfileSpec(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    description: str = ""
    platform: Literal["linux", "jetson", "raspberrypi", "android"] = "linux"
    transport: Transport
    workdir: str | None = None
    # capabilities (melt/devices/capability.py): which runtimes the device can run
    python: Annotated[str | Literal[False] | None, BeforeValidator(_python_value)] = None  # absent: per transport
    llama_cpp_bin: Annotated[str, BeforeValidator(_folder_value)] | None = None  # llama.cpp's tools: llama_cpp_cli
    # variables the agent gets beyond the allow-list (melt/agent/environment.py): NAME takes the value it has
    # where the agent starts (this shell for local, the device's login shell, the adb shell), NAME=value sets it
    env: list[Annotated[str, AfterValidator(check_pass)]] = []
    sensors: Sensors = Sensors()
    limits: Limits = Limits()
    tags: list[str] = []


@dataclass(frozen=True)
class DeviceProfile:
    path: Path
    spec: ProfileSpec

    @property
    def name(self) -> str:
        return self.spec.name

    def to_json(self) -> dict:
        return {"path": str(self.path), **self.spec.model_dump(mode="json")}


def profile_path(name_or_path: str) -> Path:
    """A path to a profile file, or the name of a shipped one in device_profiles/."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file() or "/" in name_or_path:
        return candidate
    return PROFILES_DIR / f"{name_or_path}.yaml"


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def load_profile(name_or_path: str) -> DeviceProfile:
    path = profile_path(name_or_path)
    if not path.is_file():
        raise InputError(
            Problem(
                str(path),
                "",
                "a device profile (a name from device_profiles/ or a path)",
                f"no file for {name_or_path!r}",
            ),
            hint="Known profiles: " + ", ".join(available_profiles()),
        )
    doc = load(path, "device profile")
    return DeviceProfile(path=path.resolve(), spec=validate(ProfileSpec, doc))
