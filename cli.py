"""melt command line: parses options, calls into melt/, prints. No logic lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from melt import __version__
from melt.errors import InputError, MeltError

DEFAULT_RESULTS = Path("results")


def _fail(e: MeltError) -> None:
    prefix = "error: bad input\n" if isinstance(e, InputError) else "error: "
    click.echo(prefix + str(e), err=True)
    sys.exit(e.exit_code)


class MeltGroup(click.Group):
    """Turns the library's typed errors into a message and an exit code (2 bad input, 1 failure)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except MeltError as e:
            _fail(e)


devices_option = click.option(
    "-d", "--device", "devices", multiple=True, metavar="DEVICE",
    help="Profile name from device_profiles/ or a path to a profile (repeatable; default: local).",
)  # fmt: skip


@click.group(cls=MeltGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="melt")
def cli() -> None:
    """melt: benchmark ML models on devices — speed, memory, heat, energy — with provenance.

    Exit codes: 0 ok, 1 failed cases, 2 bad input.
    """


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@devices_option
def validate(recipe: Path, devices: tuple[str, ...]) -> None:
    """Check RECIPE (and device profiles) without running anything; exit 2 on bad input."""
    from melt.run import plan

    p = plan(recipe, devices)
    click.echo(
        f"{recipe}: ok: {len(p.recipe.spec.models)} models, {len(p.cases)} cases "
        f"on {', '.join(d.name for d in p.profiles)}"
    )
    for case in p.cases:
        click.echo(f"  {case.case_id}  {case.device:<10} {case.label}")


def _case_line(event: str, info: dict) -> str | None:
    if event == "case_start":
        return f"[{info['index']}/{info['total']}] {info['case'].device} {info['case'].label} ..."
    if event == "case_end":
        if info["status"] != "ok":
            return f"    FAILED: {info['reason']}"
        s = (info.get("metrics") or {}).get("summary", {})
        figures = []
        for key, fmt in (("load_s", "load {:.2f} s"), ("prefill_tok_s", "prefill {:.1f} tok/s"),
                         ("decode_tok_s", "decode {:.1f} tok/s"), ("ttft_s", "ttft {:.3f} s"),
                         ("latency_p50_ms", "p50 {:.3f} ms"), ("throughput_ips", "{:.1f} inf/s"),
                         ("peak_rss_mb", "peak rss {:.0f} MB")):  # fmt: skip
            if s.get(key) is not None:
                figures.append(fmt.format(s[key]))
        cv = f", cv {s['cv_pct']:.1f}%" if s.get("cv_pct") is not None else ""
        return f"    ok: {', '.join(figures)} ({s.get('n_trials')} trials{cv}, {s.get('validity')})"
    return None


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@devices_option
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_RESULTS,
              show_default=True, help="Folder that holds runs.")  # fmt: skip
@click.option("--run-id", help="Name of the run folder (default: UTC time and recipe name).")
@click.option("--resume", is_flag=True, help="Finish the run --run-id: run only its missing or failed cases.")
def run(recipe: Path, devices: tuple[str, ...], results_dir: Path, run_id: str | None, resume: bool) -> None:
    """Run RECIPE on each DEVICE; write results/<run_id>/. Exit 1 if any case failed."""
    from melt.run import execute, plan

    if resume and not run_id:
        raise InputError([], hint="--resume needs --run-id: the run to finish (see `melt results list`).")
    p = plan(recipe, devices)

    def progress(event: str, **info) -> None:
        line = _case_line(event, info)
        if line:
            click.echo(line)

    outcome = execute(p, results_dir, run_id, resume, progress)
    if outcome.skipped:
        click.echo(f"{len(outcome.skipped)} cases already done, kept")
    click.echo(f"{len(outcome.ok)} ok, {len(outcome.failed)} failed")
    click.echo(f"results: {outcome.run_dir}")
    if outcome.failed:
        click.echo(
            f"finish the failed cases with: melt run {recipe} --run-id {outcome.run_dir.name} --resume",
            err=True,
        )
        sys.exit(1)


@cli.group()
def devices() -> None:
    """Device profiles: which exist, what a device is."""


@devices.command("list")
@click.option("--no-check", is_flag=True, help="Only list the profiles; do not try to reach the devices.")
def devices_list(no_check: bool) -> None:
    """List the shipped device profiles and whether each device answers now (and why not)."""
    from concurrent.futures import ThreadPoolExecutor

    from melt.devices.local import reachable
    from melt.devices.profile import available_profiles, load_profile

    profiles = [load_profile(name) for name in available_profiles()]
    with ThreadPoolExecutor(max_workers=8) as pool:  # devices answer (or time out) side by side
        states = list(pool.map(lambda p: (None, "") if no_check else reachable(p), profiles))
    for profile, (ok, why) in zip(profiles, states):
        state = "" if ok is None else ("reachable" if ok else f"unreachable: {why}")
        t = profile.spec.transport
        click.echo(f"{profile.name:<20} {profile.spec.platform:<12} {t.kind:<6} {profile.spec.description}")
        if state:
            click.echo(f"{'':<20} {state}")


@devices.command("probe")
@click.argument("device")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def devices_probe(device: str, as_json: bool) -> None:
    """Start the agent on DEVICE; report the machine, its runtimes, and its sensors: channels with
    units, the power method, which channel is total power, and what was looked for and not found."""
    from melt.devices.local import open_session
    from melt.devices.profile import load_profile

    profile = load_profile(device)
    env = open_session(profile).environment(["llama_cpp", "onnxruntime"])
    if as_json:
        click.echo(json.dumps({"device": profile.name, **env}, indent=2))
        return
    e = env["environment"]
    facts = [
        e.get("model"), e.get("cpu_model"), f"{e['cpu_count']} cores" if e.get("cpu_count") else None,
        f"{e['mem_total_mb']:.0f} MB" if e.get("mem_total_mb") else None,
        f"Android {e['android']}" if e.get("android") else e.get("os"), f"kernel {e.get('kernel')}",
        f"python {e['python']}" if e.get("python") else "no python",
        f"{e['workdir_free_mb']:.0f} MB free in workdir" if e.get("workdir_free_mb") else None,
    ]  # fmt: skip
    click.echo(f"{profile.name}: " + ", ".join(str(f) for f in facts if f))
    if "cpu_governors" in e:
        click.echo(f"  governors: {', '.join(e['cpu_governors']) or 'not readable'}")
    for name, r in env["runtimes"].items():
        versions = ", ".join(f"{k}={v}" for k, v in r.items() if k in ("llama_cpp_python", "onnxruntime"))
        click.echo(f"  {name}: {'ok ' + versions if r['available'] else r['error']}")
    if env.get("sensors"):
        click.echo(_sensor_lines(env["sensors"]))


def _sensor_lines(sensors: dict) -> str:
    lines = [f"  sensors under {sensors.get('root', '/')}: power method {sensors.get('power_method', 'none')}"
             + (f", total power in {sensors['power_total']}" if sensors.get("power_total") else "")]  # fmt: skip
    for name, probe in sensors.get("probes", {}).items():
        if probe.get("error"):
            lines.append(f"    {name}: error: {probe['error']}")
        elif probe.get("channels"):
            lines.append(f"    {name}: {', '.join(probe['channels'])}")
            lines += [f"      {note}" for note in probe.get("notes", [])]
        for missing in probe.get("missing", []):
            lines.append(f"    {name}: not found: {missing}")
    return "\n".join(lines)


@cli.group()
def results() -> None:
    """Runs on disk: list, show, export."""


results_dir_option = click.option(
    "--results",
    "results_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_RESULTS,
    show_default=True,
)


@results.command("list")
@results_dir_option
def results_list(results_dir: Path) -> None:
    """List the runs under --results, newest first."""
    from melt.results.layout import list_runs

    runs = list_runs(results_dir)
    if not runs:
        click.echo(f"no runs under {results_dir}")
    for r in runs:
        failed = f", {r['cases_failed']} failed" if r["cases_failed"] else ""
        click.echo(
            f"{r['run_id']:<40} {r['status'] or '?':<11} {r['cases_ok']}/{r['cases_total']} ok{failed}  {r['path']}"
        )


@results.command("show")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
def results_show(run_dir: Path) -> None:
    """Print a run's cases with their key figures and any failure reasons."""
    from melt.report.export import to_text

    click.echo(to_text(run_dir))


@results.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "md"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
def results_export(run_dir: Path, fmt: str, output: Path | None) -> None:
    """Export a run's summary as CSV, JSON or a markdown table (fits a CI job summary)."""
    from melt.report.export import export

    text = export(run_dir, fmt)
    if output:
        output.write_text(text)
        click.echo(f"wrote {output}")
    else:
        click.echo(text, nl=False)


def main() -> None:
    cli(prog_name="melt")


if __name__ == "__main__":
    main()
