"""melt command line: parses options, calls into melt/, prints. No logic lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from melt import __version__
from melt.errors import InputError, MeltError, Problem

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


case_option = click.option(
    "--case", "case_ids", multiple=True, metavar="CASE_ID",
    help="Run only this case (repeatable), e.g. to confirm a regression `melt compare` found.",
)  # fmt: skip


results_dir_option = click.option(
    "--results",
    "results_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_RESULTS,
    show_default=True,
)


@click.group(cls=MeltGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="melt")
def cli() -> None:
    """melt: benchmark ML models on devices — speed, memory, heat, energy — with provenance.

    Exit codes: 0 ok, 1 failed cases or a regression, 2 bad input.
    """


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@devices_option
def validate(recipe: Path, devices: tuple[str, ...]) -> None:
    """Check RECIPE (or a sweep file) and device profiles without running anything; exit 2 on bad input."""
    from melt.plan import plan, plan_sweep
    from melt.sweep import is_sweep_file

    if is_sweep_file(recipe):
        if devices:
            raise InputError(Problem("-d", "", "no -d with a sweep: its pool names the devices", " ".join(devices)))
        p = plan_sweep(recipe)
        models = {(c.recipe, c.model_id) for c in p.cases}
        what = f"sweep of {len(p.recipes)} recipes, {len(models)} models"
    else:
        p = plan(recipe, devices)
        what = f"{len(p.recipe.spec.models)} models"
    click.echo(f"{recipe}: ok: {what}, {len(p.cases)} cases on {', '.join(d.name for d in p.profiles)}")
    for case in p.cases:
        click.echo(f"  {case.case_id}  {case.device:<10} {case.label}")


def _case_line(event: str, info: dict) -> str | None:
    from melt.progress import figures_line

    if event == "lab_wait":  # a lab place held by someone else (melt/lab/)
        return f"{info['device']}: waiting for place {info['place']}, {info['holder']}"
    if event == "case_start":
        return f"[{info['index']}/{info['total']}] {info['case'].device} {info['case'].label} ..."
    if event == "case_end":
        where = f"{info['case'].device} {info['case'].label}"
        if info["status"] != "ok":
            return f"    FAILED ({where}): {info['reason']}"
        return f"    ok ({where}): {figures_line(info.get('metrics'))}"
    return None


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False, path_type=Path))
@devices_option
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_RESULTS,
              show_default=True, help="Folder that holds runs.")  # fmt: skip
@click.option("--run-id", help="Name of the run folder (default: UTC time and recipe name).")
@click.option("--resume", is_flag=True, help="Finish the run --run-id: run only its missing or failed cases.")
@case_option
def run(recipe: Path, devices: tuple[str, ...], results_dir: Path, run_id: str | None, resume: bool,
        case_ids: tuple[str, ...]) -> None:  # fmt: skip
    """Run RECIPE on each DEVICE; write results/<run_id>/. Exit 1 if any case failed."""
    from melt.plan import plan
    from melt.run import execute

    if resume and not run_id:
        raise InputError([], hint="--resume needs --run-id: the run to finish (see `melt results list`).")
    p = plan(recipe, devices).only(case_ids)

    def progress(event: str, **info) -> None:
        line = _case_line(event, info)
        if line:
            click.echo(line)

    outcome = execute(p, results_dir, run_id, resume, progress)
    _finish(outcome, f"melt run {recipe}")


def _finish(outcome, again: str) -> None:
    """The end of a run or sweep: counts, where the results and the report are, how to resume."""
    from melt.report.html import write_report

    if outcome.skipped:
        click.echo(f"{len(outcome.skipped)} cases already done, kept")
    click.echo(f"{len(outcome.ok)} ok, {len(outcome.failed)} failed")
    click.echo(f"results: {outcome.run_dir}")
    try:
        click.echo(f"report: {write_report([outcome.run_dir])}")
    except Exception as e:  # noqa: BLE001 - the results are on disk; `melt report` can try again
        click.echo(f"report: not written: {type(e).__name__}: {e}; retry with: melt report {outcome.run_dir}", err=True)
    if outcome.failed:
        click.echo(f"finish the failed cases with: {again} --run-id {outcome.run_dir.name} --resume", err=True)
        sys.exit(1)


@cli.command()
@click.argument("sweep_file", metavar="SWEEP", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--tag", "tags", multiple=True, metavar="TAG", help="Only the pool's devices with this tag (repeatable).")
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_RESULTS,
              show_default=True, help="Folder that holds runs.")  # fmt: skip
@click.option("--run-id", help="Name of the run folder (default: UTC time and sweep name).")
@click.option("--resume", is_flag=True, help="Finish the sweep --run-id: run only its missing or failed cases.")
@click.option("--live/--no-live", default=None, help="Live table per device (default: when stdout is a terminal).")
@case_option
def sweep(sweep_file: Path, tags: tuple[str, ...], results_dir: Path, run_id: str | None, resume: bool,
          live: bool | None, case_ids: tuple[str, ...]) -> None:  # fmt: skip
    """Run every recipe of SWEEP on its pool of devices, as one run: one worker per device, devices
    in parallel, each device running one case at a time. A device that fails does not stop the
    others; --resume finishes what is missing. Exit 1 if any case failed."""
    from melt.plan import plan_sweep
    from melt.progress import SweepProgress
    from melt.run import execute

    if resume and not run_id:
        raise InputError([], hint="--resume needs --run-id: the sweep run to finish (see `melt results list`).")
    p = plan_sweep(sweep_file, tags).only(case_ids)
    with SweepProgress(live=live) as view:
        outcome = execute(p, results_dir, run_id, resume, view)
    _finish(outcome, f"melt sweep {sweep_file}")


def _run_folder(ref: str, results_dir: Path) -> Path:
    """A run folder given as a path, or as a run id under --results."""
    for candidate in (Path(ref), results_dir / ref):
        if (candidate / "run.json").is_file():
            return candidate
    raise InputError(
        Problem(ref, "", "a run folder (holding run.json) or a run id under " + str(results_dir), "neither")
    )


@cli.command()
@click.argument("runs", nargs=-1, metavar="[BASE_RUN] NEW_RUN")
@click.option("--threshold", "threshold_pct", type=click.FloatRange(0, 1000), default=5.0, show_default=True,
              help="Smallest change in % that counts, in the metric's bad or good direction.")  # fmt: skip
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True), default=0.05, show_default=True,
              help="Family-wise error rate over all tests of the comparison (Holm).")  # fmt: skip
@click.option("--baseline-window", type=click.IntRange(1), metavar="N",
              help="Compare NEW_RUN against the last N earlier runs of the same cases in the catalog "
                   "(runs judged regressed are skipped); then BASE_RUN is not given.")  # fmt: skip
@click.option("--run-noise-pct", type=click.FloatRange(0, 100), metavar="PCT",
              help="Run-to-run noise to assume where a case has fewer than 3 earlier runs: the sd of a run's level "
                   "between identical runs, in %. Default: the figure measured for melt (stated in the output); "
                   "0 leaves what the runs themselves show.")  # fmt: skip
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write JUnit XML here.")
@click.option("--markdown", type=click.Path(dir_okay=False, path_type=Path), help="Write a markdown table here.")
@click.option("--all", "show_all", is_flag=True, help="Print every case and metric, not only the changes.")
@results_dir_option
def compare(runs: tuple[str, ...], threshold_pct: float, alpha: float, baseline_window: int | None,
            run_noise_pct: float | None, junit: Path | None, markdown: Path | None, show_all: bool,
            results_dir: Path) -> None:  # fmt: skip
    """Judge NEW_RUN against BASE_RUN case by case (matched by case_id): worse, better, not
    significant, new, missing, failed. Exit 1 on a significant regression or a failed case.

    \b
    A change counts only when it is both beyond --threshold in the metric's direction (higher is
    better for tok/s and inf/s; lower for latency, energy, memory) and significant, Holm-corrected
    across every test of the comparison so the chance of any false alarm stays under --alpha.
    The test: runs differ more than trials do (each run has its own thread placement, memory
    layout, clocks), so the run is the unit. Where the results catalog holds 3 or more earlier
    runs of a case, a prediction t-test of the new run's median against their medians (basis
    "history"). Without that history, the two runs' medians are judged against a run-to-run noise
    that cannot be measured from one pair: --run-noise-pct (basis "assumed", said in each verdict),
    or the larger spread of the one or two earlier runs the catalog has (basis "catalog") or of
    the baseline's own time blocks (basis "blocks"), plus the drift within each run (medians of 10
    time blocks of its trials). So without history only large changes count (at the default 10%,
    beyond -24% or +32% for one pair of runs): keep a few runs of history (the nightly job does)
    to judge small ones.
    Peak RSS is judged against history only; load time, ONNX throughput and p90 latency are shown,
    not judged (too noisy from run to run). Runs are folders or run ids under --results; the
    catalog is the one of the folder holding NEW_RUN; the verdicts are also written to
    NEW_RUN/compare.json, and a run judged regressed is left out of later baselines and history.
    """
    from melt.analysis.compare import DEFAULT_RUN_NOISE_PCT, compare_runs, load_run
    from melt.analysis.compare import compare as judge
    from melt.report.verdicts import to_junit, to_markdown, to_text
    from melt.results.catalog import Catalog
    from melt.results.layout import RunDir, write_json

    want = 1 if baseline_window else 2
    if len(runs) != want:
        expected = "NEW_RUN (with --baseline-window)" if baseline_window else "BASE_RUN NEW_RUN"
        raise InputError(Problem("melt compare", "", expected, " ".join(runs) or "no runs"))
    noise = DEFAULT_RUN_NOISE_PCT if run_noise_pct is None else run_noise_pct
    folders = [_run_folder(r, results_dir) for r in runs]
    new_dir = folders[-1]
    if baseline_window:
        manifest = RunDir(new_dir).read()
        new = load_run(new_dir, manifest)
        with Catalog.open(new_dir.parent) as catalog:  # the catalog of the folder that holds the run
            base = catalog.baseline_window(list(new), manifest["run_id"], baseline_window)
            history = catalog.run_history(list(new), manifest.get("started_at"), manifest["run_id"])
        result = judge(base, new, threshold_pct, alpha, [], manifest["run_id"], history, noise)
        if not base:
            click.echo(f"no earlier runs of these cases in the catalog under {new_dir.parent}", err=True)
    else:
        result = compare_runs(folders[0], new_dir, threshold_pct, alpha, run_noise_pct=noise)
    write_json(new_dir / "compare.json", result.to_json())
    if junit:
        junit.write_text(to_junit(result))
    if markdown:
        markdown.write_text(to_markdown(result))
    click.echo(to_text(result, show_all), nl=False)
    if result.regressed or result.failed:
        sys.exit(1)


@cli.command()
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR...",
                type=click.Path(file_okay=False, exists=True, path_type=Path))  # fmt: skip
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write (default: RUN_DIR/report.html; several runs: report-vs-<earlier runs>.html in "
                   "the last run's folder).")  # fmt: skip
@click.option("--threshold", "threshold_pct", type=click.FloatRange(0, 1000), default=5.0, show_default=True,
              help="Several runs: smallest change in % that counts, as in `melt compare`.")  # fmt: skip
def report(run_dirs: tuple[Path, ...], output: Path | None, threshold_pct: float) -> None:
    """Write one self-contained HTML report (offline: plotly.js embedded) of one run, or of several side
    by side: each later run judged against the first, with `melt compare`'s verdicts."""
    from melt.report.html import write_report

    click.echo(f"report: {write_report(list(run_dirs), output, threshold_pct)}")


# -- melt lab: the labgrid lab's places, and holds for people (melt/lab/desk.py) --------------------------
coordinator_option = click.option(
    "--coordinator",
    metavar="HOST:PORT",
    help="The labgrid coordinator (default: LG_COORDINATOR, else 127.0.0.1:20408).",
)


@cli.group()
def lab() -> None:
    """The labgrid lab: its places, who holds them, and holds for people (the same locks melt's runs use)."""


@lab.command("places")
@coordinator_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def lab_places(coordinator: str | None, as_json: bool) -> None:
    """List the lab's places: tags, who holds them, and which melt profiles map to each."""
    from melt.lab.desk import places

    rows = places(coordinator)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        tags = " ".join(f"{k}={v}" for k, v in sorted(r["tags"].items()))
        held = f"{r['held']['how']} by {r['held']['who']}" if r["held"] else "free"
        profiles = ", ".join(r["profiles"]) or "-"
        click.echo(f"{r['place']:<20} {held:<40} profiles: {profiles:<20} {tags}")


@lab.command("reserve")
@click.argument("place")
@coordinator_option
@click.option("--wait-s", type=click.FloatRange(0), default=0, show_default=True,
              help="Wait this long for a place someone else holds.")  # fmt: skip
def lab_reserve(place: str, coordinator: str | None, wait_s: float) -> None:
    """Hold PLACE as you (labgrid's host/user) until `melt lab release PLACE`; melt runs wait for it meanwhile."""
    from melt.lab.desk import reserve

    held = reserve(place, coordinator, wait_s)
    click.echo(f"holding place {place} (reservation {held.token}; {held.username}@{held.address}:{held.port}, "
               f"exported by {held.exporter} on {held.exporter_host})")  # fmt: skip


@lab.command("release")
@click.argument("place")
@coordinator_option
@click.option("--kick", is_flag=True, help="Release it whoever holds it.")
def lab_release(place: str, coordinator: str | None, kick: bool) -> None:
    """Release PLACE (yours; --kick: anyone's) and cancel its reservation."""
    from melt.lab.desk import release

    click.echo(release(place, coordinator, kick))


@cli.group()
def devices() -> None:
    """Device profiles: which exist, what a device is."""


@devices.command("list")
@click.option("--no-check", is_flag=True, help="Only list the profiles; do not try to reach the devices.")
def devices_list(no_check: bool) -> None:
    """List the shipped device profiles and whether each device answers now (and why not)."""
    from concurrent.futures import ThreadPoolExecutor

    from melt.devices.device import reachable
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
@click.option("--bandwidth", is_flag=True,
              help="Also measure the memory read and copy bandwidth there (the device locked meanwhile).")  # fmt: skip
def devices_probe(device: str, as_json: bool, bandwidth: bool) -> None:
    """Start the agent on DEVICE; report the machine, its runtimes, and its sensors: channels with
    units, the power method, which channel is total power, and what was looked for and not found;
    and the capabilities its profile declares (python, llama_cpp_bin) with the runtimes they allow.
    With --bandwidth, the memory bandwidth measured there, as a run with telemetry.bandwidth does."""
    from melt.devices.capability import declared, runtimes
    from melt.devices.device import Device
    from melt.devices.profile import load_profile

    profile = load_profile(device)
    target = Device(profile)
    try:
        target.hold()  # a lab place is held for the probe, as for a run
        env = target.environment(runtimes(profile))
        if bandwidth:
            from melt.devices import bandwidth as membw

            target.open("probe-bandwidth")  # no run's case shares the memory with the test
            env["bandwidth"] = membw.measure(target)
    finally:
        target.close() if bandwidth else target.t.close()
    capabilities = declared(profile)
    if as_json:
        click.echo(json.dumps({"device": profile.name, "capabilities": capabilities, **env}, indent=2))
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
    click.echo(_environment_lines(e))
    click.echo(_capability_lines(capabilities))
    for name, r in env["runtimes"].items():
        versions = ", ".join(f"{k}={v}" for k, v in r.items() if k in ("llama_cpp_python", "onnxruntime"))
        click.echo(f"  {name}: {'ok ' + versions if r['available'] else r['error']}")
    if env.get("sensors"):
        click.echo(_sensor_lines(env["sensors"]))
    if "bandwidth" in env:
        click.echo(_bandwidth_lines(env["bandwidth"]))


def _bandwidth_lines(bw: dict) -> str:
    """The memory bandwidth record (melt.devices.bandwidth.measure): figures, method, the datasheet beside."""
    sheet = (
        f"; datasheet (profile limits.mem_bandwidth_gbs) {bw['datasheet_gbs']:g} GB/s"
        if bw.get("datasheet_gbs")
        else ""
    )
    if bw.get("mem_bw_read_gbs") is None:
        return f"  memory bandwidth: {bw.get('why', 'not measured')}{sheet}"
    m = bw["method"]
    return "\n".join([
        f"  memory bandwidth: read {bw['mem_bw_read_gbs']:.1f} GB/s (median {bw['read_median_gbs']:.1f}), "
        f"copy {bw['mem_bw_copy_gbs']:.1f} GB/s (median {bw['copy_median_gbs']:.1f}){sheet}",
        f"    by {m['tool']}, {m['threads']} threads, 2 arrays of {m['bytes_per_array'] / 2**20:.0f} MiB "
        f"({m['array_size']}), {m['repetitions']} repetitions: {m['statistic']}",
        f"    read: {m['read']}; copy: {m['copy']}",
        *(f"    not used: {a}" for a in bw.get("attempts", [])),
    ])  # fmt: skip


def _capability_lines(c: dict) -> str:
    """The profile's capabilities (melt.devices.capability.declared): what it declares and what that allows."""
    python = c["python"] or "none"
    lines = [
        f"  capabilities (from the profile): python {python} ({c['python_from']}), "
        f"llama_cpp_bin {c['llama_cpp_bin'] or 'none'}",
        f"    runtimes: {', '.join(c['runtimes']) or 'none'}",
    ]
    lines += [f"    not {runtime}: needs {r['key']}, found {r['found']}" for runtime, r in c["refused"].items()]
    return "\n".join(lines)


def _environment_lines(e: dict) -> str:
    """The agent's variables (melt.agent.environment.record) and the ISA comparison (melt.agent.isa.summary)."""
    variables = e.get("variables") or {}
    lines = ["  agent variables: " + (", ".join(f"{k}={v}" for k, v in variables.items()) or "none speed-relevant")]
    if e.get("withheld"):
        lines.append(f"  withheld (set where the agent starts, not in the profile's env:): {', '.join(e['withheld'])}")
    isa = e.get("isa") or {}
    if isa.get("cpu_features"):
        lines.append(f"  cpu isa ({isa.get('cpu_source')}): {' '.join(isa['cpu_features'])}")
    if isa.get("build_features"):
        lines.append(f"  llama.cpp built for: {' '.join(isa['build_features'])}")
    lines += [f"  warning: {w}" for w in isa.get("warnings", [])]
    return "\n".join(lines)


def _sensor_lines(sensors: dict) -> str:
    lines = [f"  sensors under {sensors.get('root', '/')}: power method {sensors.get('power_method', 'none')}"
             + (f", total power in {sensors['power_total']}" if sensors.get("power_total") else "")]  # fmt: skip
    if sensors.get("power_rule"):
        lines.append(f"  total power: {sensors['power_rule']}")
    board = sensors.get("board") or {}
    if board.get("family") or board.get("model"):
        lines.append(f"  board: {board.get('family') or 'not identified'} ({board.get('by')})")
    for name, probe in sensors.get("probes", {}).items():
        if probe.get("error"):
            lines.append(f"    {name}: error: {probe['error']}")
        elif probe.get("channels"):
            lines.append(f"    {name}: {', '.join(probe['channels'])}")
            lines += [f"      {note}" for note in probe.get("notes", [])]
            if probe.get("skipped"):
                lines.append(f"      skipped, not understood: {', '.join(probe['skipped'])}")
        for missing in probe.get("missing", []):
            lines.append(f"    {name}: not found: {missing}")
    return "\n".join(lines)


@cli.group()
def results() -> None:
    """Runs on disk: list, show, export."""


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


@results.command("query")
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@results_dir_option
def results_query(sql: str, fmt: str, results_dir: Path) -> None:
    """Run SQL on the results catalog (DuckDB; tables runs, cases, samples). The catalog is brought
    up to date with the files first, and rebuilt from them if missing.

    \b
    melt results query "SELECT device, label, decode_tok_s FROM cases WHERE status = 'ok'"
    """
    import duckdb

    from melt.results.catalog import Catalog

    with Catalog.open(results_dir) as catalog:
        try:
            frame = catalog.sql(sql)
        except duckdb.Error as e:
            raise InputError(Problem("SQL", "", "a query the catalog accepts", str(e).splitlines()[0])) from None
    _print_frame(frame, fmt)


def _print_frame(frame, fmt: str) -> None:
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(frame.to_json(orient="records", date_format="iso", indent=2))
    else:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200):
            click.echo(frame.to_string(index=False) if not frame.empty else "(no rows)")


@results.command("history")
@click.option("--case", "case_id", help="One case_id.")
@click.option("--device", help="Every case on this device (with --model: of this model).")
@click.option("--model", help="Every case of this model id.")
@click.option("--metric", help="One metric, e.g. decode_tok_s (default: all tested metrics).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@results_dir_option
def results_history(case_id: str | None, device: str | None, model: str | None, metric: str | None, fmt: str,
                    results_dir: Path) -> None:  # fmt: skip
    """A case's figures run after run, from the catalog: median, p10, p90 and n of its trial samples."""
    from melt.results.catalog import Catalog

    if not (case_id or device or model):
        raise InputError(Problem("melt results history", "", "--case, or --device and/or --model", "none"))
    with Catalog.open(results_dir) as catalog:
        frame = catalog.history(case_id, device, model, metric)
    _print_frame(frame, fmt)


def main() -> None:
    cli(prog_name="melt")


if __name__ == "__main__":
    main()
