"""The results catalog: an embedded DuckDB index of every run under a results folder (runs, cases,
per-trial samples), so history queries are cheap.

The files stay the source of truth. The catalog is brought up to date each time it is opened: a
run whose run.json, summary.csv or compare.json changed (size or mtime) is re-indexed, a run whose
folder is gone is dropped, and a missing or older-schema database is rebuilt from the files. When
another process holds the database, an in-memory catalog is built from the files instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb
import pandas as pd

from melt import registry
from melt.analysis.samples import samples_of
from melt.results.layout import RunDir, read_json
from melt.results.reader import CaseData, read_run

CATALOG_NAME = "catalog.duckdb"
CATALOG_SCHEMA = 1
METRIC_COLUMNS = registry.names()
FINGERPRINT_FILES = ("run.json", "summary.csv", "compare.json")
HISTORY_RUNS = 20  # earlier runs a comparison takes its run-to-run spread from

RUN_COLUMNS = {
    "run_id": "VARCHAR PRIMARY KEY",
    "path": "VARCHAR",
    "name": "VARCHAR",  # the recipe's name, or the sweep's
    "kind": "VARCHAR",  # run | sweep
    "status": "VARCHAR",
    "started_at": "TIMESTAMPTZ",
    "ended_at": "TIMESTAMPTZ",
    "host": "VARCHAR",
    "devices": "VARCHAR[]",
    "cases_total": "INTEGER",
    "cases_ok": "INTEGER",
    "cases_failed": "INTEGER",
    "regressed": "BOOLEAN",  # from compare.json, when `melt compare` judged this run
    "fingerprint": "VARCHAR",
}
CASE_COLUMNS = {
    "run_id": "VARCHAR",
    "case_id": "VARCHAR",
    "recipe": "VARCHAR",
    "device": "VARCHAR",
    "model": "VARCHAR",
    "runtime": "VARCHAR",
    "label": "VARCHAR",
    "status": "VARCHAR",
    "reason": "VARCHAR",
    "params": "VARCHAR",  # JSON of workload + params
    **{m.name: registry.SQL_TYPES[m.kind] for m in registry.METRICS},
}
SAMPLE_COLUMNS = {"run_id": "VARCHAR", "case_id": "VARCHAR", "metric": "VARCHAR", "trial": "INTEGER", "value": "DOUBLE"}
# the schema as stored: its version and its columns, so a registry that gained a metric rebuilds an older catalog
# from the files (it is an index of them) instead of failing on a column count
SCHEMA_KEY = f"{CATALOG_SCHEMA}:" + ",".join(CASE_COLUMNS)


def _fingerprint(run_path: Path) -> str:
    parts = []
    for name in FINGERPRINT_FILES:
        p = run_path / name
        parts.append(f"{p.stat().st_mtime_ns}:{p.stat().st_size}" if p.is_file() else "-")
    return "/".join(parts)


def _ddl(table: str, columns: dict[str, str]) -> str:
    return f"CREATE TABLE {table} (" + ", ".join(f'"{k}" {v}' for k, v in columns.items()) + ")"


def _run_row(run_path: Path, manifest: dict) -> dict:
    statuses = [c["status"] for c in manifest.get("cases", {}).values()]
    compare_json = run_path / "compare.json"
    regressed = None
    if compare_json.is_file():
        try:
            regressed = bool(read_json(compare_json).get("regressed"))
        except (OSError, ValueError):
            pass
    host = manifest.get("host", {}).get("environment", {})
    sweep = manifest.get("sweep")
    return {
        "run_id": manifest.get("run_id", run_path.name),
        "path": str(run_path),
        "name": (sweep or manifest.get("recipe") or {}).get("name"),
        "kind": "sweep" if sweep else "run",
        "status": manifest.get("status"),
        "started_at": manifest.get("started_at"),
        "ended_at": manifest.get("ended_at"),
        "host": host.get("hostname") or host.get("cpu_model"),
        "devices": list(manifest.get("devices", {})),
        "cases_total": len(statuses),
        "cases_ok": statuses.count("ok"),
        "cases_failed": statuses.count("failed"),
        "regressed": regressed,
        "fingerprint": _fingerprint(run_path),
    }


def _case_rows(run_path: Path, manifest: dict) -> tuple[list[dict], list[dict]]:
    cases, samples = [], []
    for c in read_run(run_path, manifest).cases:
        row = {k: None for k in CASE_COLUMNS}
        row.update(run_id=c.run_id, case_id=c.case_id, status=c.status, reason=c.reason)
        row.update(device=c.device or None, model=c.model or None, label=c.label)
        if c.case:
            row.update(recipe=c.case.get("recipe"), runtime=c.runtime)
            row["params"] = json.dumps({**c.case.get("workload", {}), **c.case.get("params", {})}, sort_keys=True)
        if c.metrics and c.case:
            for m in METRIC_COLUMNS:
                row[m] = c.summary.get(m)
            for metric, values in samples_of(c.case, c.trials(), c.metrics).items():
                samples += [
                    {"run_id": c.run_id, "case_id": c.case_id, "metric": metric, "trial": i, "value": v}
                    for i, v in enumerate(values)
                ]
        cases.append(row)
    return cases, samples


class Catalog:
    """Open with Catalog.open(results_dir); query with .sql(); close when done (or use `with`)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, results_dir: Path, path: Path | None):
        self.con = con
        self.results_dir = Path(results_dir)
        self.path = path  # None: in memory

    @classmethod
    def open(cls, results_dir: Path, sync: bool = True) -> Catalog:
        results_dir = Path(results_dir)
        path = results_dir / CATALOG_NAME
        try:
            results_dir.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(str(path))
        except (duckdb.IOException, OSError) as e:  # held by another melt, or a read-only folder
            print(f"melt: catalog {path} not writable ({str(e).splitlines()[0]}); using one in memory", file=sys.stderr)
            con, path = duckdb.connect(":memory:"), None
        catalog = cls(con, results_dir, path)
        catalog._ensure_schema()
        if sync:
            catalog.sync()
        return catalog

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.con.close()

    def _ensure_schema(self) -> None:
        tables = {r[0] for r in self.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        version = None
        if "meta" in tables:
            found = self.con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            version = found[0] if found else None
        if version == SCHEMA_KEY:
            return
        for table in ("meta", "runs", "cases", "samples"):
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
        self.con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        self.con.execute("INSERT INTO meta VALUES ('schema', ?)", [SCHEMA_KEY])
        self.con.execute(_ddl("runs", RUN_COLUMNS))
        self.con.execute(_ddl("cases", CASE_COLUMNS))
        self.con.execute(_ddl("samples", SAMPLE_COLUMNS))

    def sync(self) -> dict[str, int]:
        """Bring the index up to date with the files; returns how many runs were added/updated/dropped."""
        known = dict(self.con.execute("SELECT path, fingerprint FROM runs").fetchall())
        on_disk = {str(p.parent): p.parent for p in sorted(self.results_dir.glob("*/run.json"))}
        changed = [path for key, path in on_disk.items() if known.get(key) != _fingerprint(path)]
        gone = [key for key in known if key not in on_disk]
        for key in gone + [str(p) for p in changed]:
            self._drop(key)
        for path in changed:
            try:
                self._index(path)
            except (OSError, ValueError, KeyError) as e:  # a torn or foreign folder: skipped, said once
                print(f"melt: catalog skips {path}: {e}", file=sys.stderr)
        return {"indexed": len(changed), "dropped": len(gone)}

    def _drop(self, path: str) -> None:
        run_ids = [r[0] for r in self.con.execute("SELECT run_id FROM runs WHERE path = ?", [path]).fetchall()]
        for run_id in run_ids:
            for table in ("samples", "cases", "runs"):
                self.con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])

    def _index(self, run_path: Path) -> None:
        manifest = RunDir(run_path).read()
        run_row = _run_row(run_path, manifest)
        self._drop(str(run_path))
        for table in ("samples", "cases", "runs"):  # the same run id from a moved folder
            self.con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_row["run_id"]])
        cases, samples = _case_rows(run_path, manifest)
        self._insert("runs", RUN_COLUMNS, [run_row])
        self._insert("cases", CASE_COLUMNS, cases)
        self._insert("samples", SAMPLE_COLUMNS, samples)

    def _insert(self, table: str, columns: dict[str, str], rows: list[dict]) -> None:
        if not rows:
            return
        frame = pd.DataFrame(rows, columns=list(columns))
        self.con.register("incoming", frame)
        try:
            self.con.execute(f"INSERT INTO {table} SELECT * FROM incoming")
        finally:
            self.con.unregister("incoming")

    def sql(self, query: str, params: list | None = None) -> pd.DataFrame:
        return self.con.execute(query, params or []).df()

    def history(
        self, case_id: str | None = None, device: str | None = None, model: str | None = None, metric: str | None = None
    ) -> pd.DataFrame:
        """One row per run and case (and metric): the run's median and spread of the trial samples."""
        where, params = ["c.status = 'ok'"], []
        for column, value in (("case_id", case_id), ("device", device), ("model", model)):
            if value:
                where.append(f"c.{column} = ?")
                params.append(value)
        if metric:
            where.append("s.metric = ?")
            params.append(metric)
        return self.sql(
            f"""
            SELECT r.started_at, r.run_id, c.case_id, c.device, c.label, s.metric,
                   median(s.value) AS median, quantile_cont(s.value, 0.1) AS p10,
                   quantile_cont(s.value, 0.9) AS p90, count(*) AS n, c.validity
            FROM cases c JOIN runs r USING (run_id) JOIN samples s USING (run_id, case_id)
            WHERE {" AND ".join(where)}
            GROUP BY ALL ORDER BY c.device, c.label, s.metric, r.started_at
            """,
            params,
        )

    def baseline_window(self, case_ids: list[str], before_run: str, n_runs: int) -> dict[str, list[CaseData]]:
        """For each case: its last n_runs ok runs started before `before_run`, skipping runs that
        `melt compare` judged regressed (a regression must not become the new normal)."""
        started = self.con.execute("SELECT started_at FROM runs WHERE run_id = ?", [before_run]).fetchone()
        if not started:
            return {}
        rows = self.sql(
            """
            SELECT c.run_id, c.case_id, c.device, c.model, c.label, r.started_at FROM cases c JOIN runs r USING (run_id)
            WHERE c.status = 'ok' AND c.case_id IN (SELECT unnest(?)) AND r.run_id != ?
              AND r.started_at < ? AND NOT coalesce(r.regressed, false)
            QUALIFY row_number() OVER (PARTITION BY c.case_id ORDER BY r.started_at DESC) <= ?
            """,
            [case_ids, before_run, started[0], n_runs],
        )
        if rows.empty:
            return {}
        samples = self._samples_for(rows)
        out: dict[str, list[CaseData]] = {}
        for r in rows.itertuples():
            out.setdefault(r.case_id, []).append(
                CaseData(
                    r.run_id, r.case_id, r.device, r.model, r.label, "ok", None, samples.get((r.run_id, r.case_id), {})
                )
            )
        return out

    def run_ids(self) -> set[str]:
        return {r[0] for r in self.con.execute("SELECT run_id FROM runs").fetchall()}

    def run_history(
        self, case_ids: list[str], before: str | None, exclude_run: str | None, max_runs: int = HISTORY_RUNS
    ) -> dict[str, dict[str, list[float]]]:
        """case_id -> metric -> the medians of the last max_runs runs of that case started before
        `before` (oldest first), leaving out runs that `melt compare` judged regressed."""
        if not case_ids or not before:
            return {}
        found = self.con.execute(
            """
            WITH per_run AS (
                SELECT s.run_id, s.case_id, s.metric, median(s.value) AS med, r.started_at
                FROM samples s JOIN runs r USING (run_id) JOIN cases c USING (run_id, case_id)
                WHERE c.status = 'ok' AND s.case_id IN (SELECT unnest(?)) AND r.started_at < ?::TIMESTAMPTZ
                  AND r.run_id != coalesce(?, '') AND NOT coalesce(r.regressed, false)
                GROUP BY s.run_id, s.case_id, s.metric, r.started_at
            ), recent AS (
                SELECT * FROM per_run
                QUALIFY row_number() OVER (PARTITION BY case_id, metric ORDER BY started_at DESC) <= ?
            )
            SELECT case_id, metric, list(med ORDER BY started_at) FROM recent GROUP BY case_id, metric
            """,
            [case_ids, before, exclude_run, max_runs],
        ).fetchall()
        out: dict[str, dict[str, list[float]]] = {}
        for case_id, metric, medians in found:
            out.setdefault(case_id, {})[metric] = list(medians)
        return out

    def _samples_for(self, rows: pd.DataFrame) -> dict[tuple[str, str], dict[str, list[float]]]:
        self.con.register("wanted", rows[["run_id", "case_id"]])
        try:
            found = self.con.execute(
                """SELECT s.run_id, s.case_id, s.metric, list(s.value ORDER BY s.trial)
                   FROM samples s JOIN wanted w USING (run_id, case_id) GROUP BY ALL"""
            ).fetchall()
        finally:
            self.con.unregister("wanted")
        out: dict[tuple[str, str], dict[str, list[float]]] = {}
        for run_id, case_id, metric, values in found:
            out.setdefault((run_id, case_id), {})[metric] = list(values)
        return out
