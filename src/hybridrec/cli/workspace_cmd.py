"""``hybridrec init | update | lookup | status | rollback | repair``: the production workspace."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hybridrec.errors import HybridrecError

if TYPE_CHECKING:
    from hybridrec.config import PipelineConfig


def _when(raw: str | None, flag: str = "--now") -> datetime | None:
    if raw is None:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise HybridrecError(
            f"{flag} {raw!r} is not an ISO 8601 time (for example 2000-12-01 or 2000-12-01T06:00:00Z)"
        ) from None


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def _open(workspace: Path) -> Any:
    """The workspace, with a warning when ``HYBRIDREC__`` environment overrides are set: a
    workspace runs with the config fixed by ``init`` (its config.json), never the environment."""
    import os

    from hybridrec.config import ENV_PREFIX
    from hybridrec.workspace import Workspace

    ignored = sorted(k for k in os.environ if k.startswith(ENV_PREFIX))
    if ignored:
        click.echo(f"warning: {', '.join(ignored)} not applied: {workspace} runs with the config "
                   f"fixed by `hybridrec init` ({workspace / 'config.json'}); environment "
                   "overrides apply to init, config validate and backtest", err=True)
    return Workspace(workspace)


def pipeline_source(config_file: Path | None, preset: str | None, report_file: Path | None,
                    arm: str | None, overrides: tuple[str, ...]) -> tuple[PipelineConfig, str]:
    """The pipeline config ``init`` deploys, and where it came from: at most one of a config
    file, a preset (the default preset when none is given) or a report's arm."""
    from hybridrec.config import load_config, load_preset, pipeline_from_report
    from hybridrec.presets import DEFAULT_PRESET

    given = [name for name, value in (("--config", config_file), ("--preset", preset),
                                      ("--from-report", report_file)) if value is not None]
    if len(given) > 1:
        raise HybridrecError(f"give one of --config, --preset and --from-report (got {', '.join(given)})")
    if arm is not None and report_file is None:
        raise HybridrecError("--arm names an arm of a backtest report: give --from-report REPORT too")
    if report_file is not None:
        if arm is None:
            raise HybridrecError(f"--from-report {report_file}: name the arm to deploy with --arm")
        return pipeline_from_report(report_file, arm, overrides=overrides), f"{report_file} arm {arm!r}"
    if config_file is not None:
        return load_config(config_file, overrides=overrides), str(config_file)
    name = preset or DEFAULT_PRESET
    return load_preset(name, overrides=overrides), f"preset {name!r}"


def register(cli: click.Group) -> None:
    @cli.command("init")
    @click.argument("workspace", type=click.Path(path_type=Path, file_okay=False))
    @click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
                  help="Pipeline config (TOML). Default: the measured preset (see --preset).")
    @click.option("--preset", "preset", default=None, metavar="NAME",
                  help="Deploy a shipped preset (default 'rerank', the stack `hybridrec demo` "
                       "measures); `hybridrec config show --preset NAME` prints it.")
    @click.option("--from-report", "report_file", type=click.Path(path_type=Path, dir_okay=False),
                  help="Deploy exactly what an LLM arm of a backtest report ran (with --arm).")
    @click.option("--arm", "arm", default=None, help="The report's arm to deploy (with --from-report).")
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                  help="Override a config value, e.g. update_policy.plugin=adaptive.")
    def init(workspace: Path, config_file: Path | None, preset: str | None, report_file: Path | None,
             arm: str | None, overrides: tuple[str, ...]) -> None:
        """Create WORKSPACE for a pipeline: the measured preset by default, a --config file, a
        --preset, or an arm of a backtest report (every plugin is checked now)."""
        from hybridrec.engine import check_config
        from hybridrec.workspace import Workspace

        cfg, source = pipeline_source(config_file, preset, report_file, arm, overrides)
        check_config(cfg, source=source)  # what `hybridrec config validate` checks
        ws = Workspace.init(workspace, cfg)
        click.echo(f"initialised workspace {ws.root} from {source} (policy "
                   f"{cfg.update_policy.plugin}, generator {cfg.generator.plugin}, serving backend "
                   f"{cfg.serving.backend}); `hybridrec config show {ws.root}` prints it")

    @cli.command("update")
    @click.argument("workspace", type=click.Path(path_type=Path, file_okay=False, exists=True))
    @click.option("--data", "data", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                  help="New interactions: CSV with user,item,timestamp[,rating][,categories].")
    @click.option("--items", "items", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                  help="Item file (item,title,categories) when --data has no categories column.")
    @click.option("--now", "now", help="The clock (ISO 8601, UTC if no zone); default: now.")
    @click.option("--data-until", "data_until",
                  help="The data is complete until then (ISO 8601, at most --now; for example the "
                  "end of the day --data covers); default: just after its last row.")
    @click.option("--json", "as_json", is_flag=True, help="Print the update report as JSON.")
    @click.option("--progress", is_flag=True, help="Show progress bars on stderr.")
    def update(workspace: Path, data: Path | None, items: Path | None, now: str | None,
               data_until: str | None, as_json: bool, progress: bool) -> None:
        """Ingest --data, let the policy decide, execute, and promote atomically."""
        from hybridrec.engine import run_update

        report = run_update(_open(workspace), data, items=items, now=_when(now),
                            data_until=_when(data_until, "--data-until"), progress=progress)
        failed = [a for a in report.actions if a.status == "failed"]
        if as_json:
            _echo_json(report.model_dump(mode="json"))
            if failed:
                sys.exit(1)
            return
        click.echo(f"update at {report.now.isoformat()}: {report.rows_ingested} rows ingested, "
                   f"{report.rows_quarantined} quarantined, {report.transitions} transitions, "
                   f"data until {report.data_until.isoformat() if report.data_until else '-'}")
        for a in report.actions:
            extra = f" -> {a.version}" if a.version else ""
            note = f" ({a.note})" if a.note else ""
            click.echo(f"  {a.kind:<18} {a.status:<8} {a.seconds:8.2f}s{extra}{note}")
        if not report.actions:
            click.echo("  the policy chose no action")
        promoted = {k: v for k, v in report.promoted.items() if v}
        click.echo("promoted: " + (", ".join(f"{k} {v}" for k, v in promoted.items()) or "nothing"))
        if report.held:
            click.echo(f"held for review: {', '.join(report.held)}")
        for a in failed:
            click.echo(f"error: {a.kind} failed: {a.note}", err=True)
        if failed:
            sys.exit(1)

    @cli.command("lookup")
    @click.argument("workspace", type=click.Path(path_type=Path, file_okay=False, exists=True))
    @click.argument("c1", type=int)
    @click.argument("c2", type=int)
    @click.option("-k", "k", type=click.IntRange(1, 100), default=5, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="Print the prediction as JSON.")
    def lookup(workspace: Path, c1: int, c2: int, k: int, as_json: bool) -> None:
        """Top-K next clusters for context (C1, C2) from the served table."""

        ws = _open(workspace)
        prediction = ws.lookup(c1, c2, k)
        table = ws.served_table or (ws.current() or {}).get("table")
        if ws.serving_problem:
            click.echo(f"warning: {ws.serving_problem}", err=True)
        if as_json:
            catalog = ws.catalog()
            payload = prediction.model_dump(mode="json")
            payload["table"] = table
            payload["descriptions"] = [catalog.description(c) for c in prediction.clusters]
            _echo_json(payload)
            return
        catalog = ws.catalog()
        click.echo(f"({c1}, {c2}) from table {table} [{prediction.level}]")
        for rank, (cluster, score) in enumerate(zip(prediction.clusters, prediction.scores, strict=True), 1):
            click.echo(f"  {rank:>2}. {cluster:>5}  {score:10.4g}  {catalog.description(cluster)}")

    @cli.command("recommend")
    @click.argument("workspace", type=click.Path(path_type=Path, file_okay=False, exists=True))
    @click.option("--items", "items", required=True,
                  help="The user's recent item ids, oldest first, comma-separated.")
    @click.option("-k", "k", type=click.IntRange(1, 100), default=5, show_default=True)
    @click.option("--exclude", type=click.Choice(["history", "context"]), default="history",
                  show_default=True, help="Drop every cluster of the user's history (novel "
                  "interests), or only the context's clusters.")
    @click.option("--top-items", type=click.IntRange(0, 100), default=0, show_default=True,
                  help="Also list each recommended cluster's most popular items.")
    @click.option("--json", "as_json", is_flag=True, help="Print the recommendation as JSON.")
    def recommend_cmd(workspace: Path, items: str, k: int, exclude: str, top_items: int,
                      as_json: bool) -> None:
        """Next interest clusters for a user whose recent items are given: the items' clusters,
        the last two distinct ones as the context, the served table's list without the user's
        history (the table's backoff when fewer than two clusters are known)."""
        ws = _open(workspace)
        wanted = [i.strip() for i in items.split(",") if i.strip()]
        if not wanted:
            raise HybridrecError("--items names no item (give ids separated by commas)")
        found = ws.recommend(wanted, k, exclude=exclude, top_items=top_items)
        if ws.serving_problem:
            click.echo(f"warning: {ws.serving_problem}", err=True)
        if as_json:
            _echo_json(found.model_dump(mode="json"))
            return
        if found.unknown_items:
            click.echo(f"not in this workspace's data (skipped): {', '.join(found.unknown_items)}", err=True)
        click.echo(f"history {found.history} -> context {found.context} [{found.level}]"
                   + (f"; excluded {found.excluded}" if found.excluded else ""))
        for rank, (cluster, score, text) in enumerate(
                zip(found.clusters, found.scores, found.descriptions, strict=True), 1):
            popular = (found.popular_items or {}).get(cluster)
            click.echo(f"  {rank:>2}. {cluster:>5}  {score:10.4g}  {text}"
                       + (f"  (e.g. {', '.join(popular)})" if popular else ""))

    @cli.command("export")
    @click.argument("workspace", type=click.Path(path_type=Path, file_okay=False, exists=True))
    @click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
                  help="A new folder: table.<format>, items.csv, catalog.json, manifest.json.")
    @click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default="jsonl",
                  show_default=True, help="Format of the table file.")
    @click.option("-k", "k", type=click.IntRange(1, 100), help="Clusters per context (default: the table's width).")
    def export_cmd(workspace: Path, out: Path, fmt: str, k: int | None) -> None:
        """Export the served table (every context's list), the item -> cluster map and the
        catalog, with the table version and a checksum of each file, for a production store."""
        from hybridrec.serving.export import export_table

        ws = _open(workspace)
        version, reader = ws.served_reader()
        manifest = export_table(
            reader, ws.catalog(), ws.item_clusters(), out, k=k, fmt=fmt,  # type: ignore[arg-type]
            source={"workspace": str(ws.root.resolve()), "table": version,
                    "table_manifest": ws.store.get("tables", version).manifest})
        click.echo(f"exported table {version}: {manifest['rows']:,} contexts x {manifest['k']}, "
                   f"{manifest['items']:,} items, to {out}")

    @cli.command("serve")
    @click.argument("workspace", type=click.Path(path_type=Path, file_okay=False, exists=True))
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
    def serve_cmd(workspace: Path, host: str, port: int) -> None:
        """Serve /lookup, /recommend and /health over HTTP (JSON); every answer names the table
        version it was read from and never mixes two versions, while updates promote new ones."""
        try:
            from hybridrec.serving.http import serve
        except ModuleNotFoundError as exc:
            raise HybridrecError(f"hybridrec serve needs {exc.name!r}, which is not installed "
                                 "(pip install 'hybridrec[serve]')") from None

        ws = _open(workspace)
        click.echo(f"serving {ws.root} on http://{host}:{port} (/recommend?items=a,b&k=, "
                   "/lookup?c1=&c2=&k=, /health, /version); Ctrl-C stops", err=True)
        try:
            serve(ws, host, port)
        except ModuleNotFoundError as exc:
            raise HybridrecError(f"hybridrec serve needs {exc.name!r}, which is not installed "
                                 "(pip install 'hybridrec[serve]')") from None

    @cli.command("status")
    @click.argument("workspace", type=click.Path(path_type=Path, file_okay=False, exists=True))
    @click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
    def status(workspace: Path, as_json: bool) -> None:
        """Versions, staleness, last actions, costs and guardrail holds.

        Every served version is checked against its manifest; exits 1 when one fails."""

        info = _open(workspace).status()
        if as_json:
            _echo_json(info)
            if info["problems"]:
                sys.exit(1)
            return
        v, s = info["versions"], info["staleness"]
        click.echo(f"workspace {info['workspace']} (policy {info['plugins']['update_policy']}), "
                   f"last update {info['updated_at'] or 'never'}")
        click.echo(f"  data until  {s['data_until'] or '-'}  ({len(v['data'])} data versions, "
                   f"{info['quarantined_rows']} quarantined rows)")
        click.echo(f"  adapter     {v['adapter'] or '-'}  trained until {s['adapter_trained_until'] or '-'}"
                   f"  (lag {s['adapter_lag_days']} days)")
        click.echo(f"  knowledge   {v['knowledge'] or '-'}  until {s['knowledge_until'] or '-'}"
                   f"  (lag {s['knowledge_lag_days']} days)")
        click.echo(f"  table       {v['table'] or '-'}  built {s['table_built_at'] or '-'}"
                   f"  {'with' if s['table_uses_knowledge'] else 'without'} knowledge")
        ages = s.get("table_row_age_days")
        if ages:
            click.echo(f"  row ages    p50 {ages['p50']:g}, p90 {ages['p90']:g}, max {ages['max']:g} days "
                       "since each row's evidence was last confirmed current")
        drift = info.get("drift") or {}
        if drift.get("top5_jaccard") is not None:
            click.echo(f"  drift       top-5 Jaccard {drift['top5_jaccard']:.3f} over {drift['pairs']} pairs "
                       "(adapter's training window vs recent data)")
        if drift.get("recall_recent") is not None:
            click.echo(f"  recall      served lists' HR@5 {drift['recall_recent']:.4f} over the last days")
        if drift.get("refresh_gain") is not None:
            click.echo(f"  freshness   a refresh would have gained {drift['refresh_gain']:+.4f} HR@5 "
                       f"(± {drift.get('refresh_gain_se') or 0.0:.4f}) on the last days")
        for hold in info["guardrail_holds"]:
            click.echo(f"  HELD adapter {hold['version']}: {'; '.join(hold['reasons'])}")
        click.echo("  costs by action:")
        for kind, row in info["costs"]["by_action"].items():
            click.echo(f"    {kind:<18} x{row['count']:<4} {row['flops']:.3g} FLOPs "
                       f"{row['seconds']:.1f} s ${row['money']:.4f}")
        click.echo("  last actions:")
        for r in info["last_actions"][-5:]:
            click.echo(f"    {r['at']} {r['action']:<18} {r['status']:<7} {r['note']}")
        for problem in info["problems"]:
            click.echo(f"  DAMAGED {problem}")
        if info["problems"]:
            click.echo(f"  the damaged versions are not served; `hybridrec rollback {info['workspace']}` "
                       "serves the last intact one", err=True)
            sys.exit(1)

    @cli.command("rollback")
    @click.argument("workspace", type=click.Path(path_type=Path, file_okay=False, exists=True))
    def rollback(workspace: Path) -> None:
        """Serve the previous adapter, knowledge and table again (data is kept)."""

        entry = _open(workspace).rollback()
        click.echo(f"now serving table {entry.get('table')} (adapter {entry.get('adapter')}, "
                   f"knowledge {entry.get('knowledge')})")
        for skipped in entry.get("rollback_skipped") or []:
            click.echo(f"  skipped an earlier entry: {skipped}")

    @cli.command("repair")
    @click.argument("workspace", type=click.Path(path_type=Path, file_okay=False, exists=True))
    @click.option("--catalog-from", "catalog_from", type=click.Path(path_type=Path, dir_okay=False),
                  default=None, help="When the catalog is damaged: the interaction file of the "
                  "workspace's first update, to rebuild it from (checked against what the "
                  "workspace recorded).")
    @click.option("--items", type=click.Path(path_type=Path, dir_okay=False), default=None,
                  help="With --catalog-from: the item file that first update read, if any.")
    def repair(workspace: Path, catalog_from: Path | None, items: Path | None) -> None:
        """Rebuild a damaged or missing state file from the intact versions on disk (earlier
        intact tables become rollback targets again); with --catalog-from, also a damaged
        catalog."""
        if items is not None and catalog_from is None:
            raise click.UsageError("--items goes with --catalog-from")
        entry = _open(workspace).repair(catalog_from, items)
        if catalog_from is not None:
            click.echo(f"catalog: {entry.get('catalog')} (rebuilt from {catalog_from} when none was intact)")
        click.echo(f"rebuilt the state of {workspace}: table {entry.get('table')}, adapter "
                   f"{entry.get('adapter')}, knowledge {entry.get('knowledge')}, "
                   f"{len(entry.get('data') or [])} data versions (the old file was kept as state.damaged-*)")


__all__ = [
    "register",
]
