"""``hybridrec backtest`` and ``hybridrec demo``: the prequential replay and its report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

DEFAULT_OUT = Path("hybridrec-report")


def _run(config: Any, out: Path, *, quiet: bool = False) -> dict[str, Any]:
    from hybridrec.backtest.report import claim_lines, summary_table, verdict, write_report
    from hybridrec.backtest.study import StudyInterrupted, run_backtest

    started = time.perf_counter()
    _quiet_libraries()
    if not quiet:
        click.echo(
            f"hybridrec: backtest on {config.dataset}, test days {config.start} to {config.end} "
            f"(exclusive), seed {config.seed}"
            + (f", {config.seeds} training seeds for the LLM arms" if config.seeds > 1 else "")
            + f", arms {', '.join(config.arms)}; report in {out}/",
            err=True,
        )
    try:
        report, _, drift_plot = run_backtest(config, progress=not quiet)
    except StudyInterrupted as stopped:
        # Write what finished, say it is partial, then fail.
        stopped.report["verdict"] = verdict(stopped.report)
        stopped.report["setup"]["wall_seconds"] = round(time.perf_counter() - started, 2)
        paths = write_report(stopped.report, out, drift_plot=stopped.drift_plot)
        raise click.ClickException(
            f"{stopped}. A PARTIAL report of what finished is in {paths['json']} and "
            f"{paths['markdown']}."
        ) from stopped
    report["verdict"] = verdict(report)
    report["setup"]["wall_seconds"] = round(time.perf_counter() - started, 2)
    paths = write_report(report, out, drift_plot=drift_plot)
    if not quiet:
        click.echo(summary_table(report))
        validation = report.get("validation")
        if validation:
            click.echo(f"markov-best: {validation['chosen']['label']}, chosen on "
                       f"{validation['window'][0]} to {validation['window'][1]} (exclusive)")
        for label, status, reason in claim_lines(report["verdict"]):
            click.echo(f"{label}: {status}" + (f" ({reason})" if reason and status != "met" else ""))
        click.echo("")
        click.echo(f"report: {paths['json']} and {paths['markdown']} "
                   f"({time.perf_counter() - started:.0f} s)")
    return report


def _quiet_libraries() -> None:
    """Keep the progress display to the replay: no per-load bars from transformers."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _split_arms(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [a.strip() for a in value.split(",") if a.strip()]


def register(cli: click.Group) -> None:
    @cli.command("backtest")
    @click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
                  help="TOML file with backtest settings (see hybridrec.backtest.config).")
    @click.option("--dataset", help="Dataset plugin name (default ml-1m).")
    @click.option("--arms", help="Comma-separated arms: built-in arm names (hybridrec.backtest.config.ALL_ARMS) "
                  "and the [arms.<name>] tables of --config (default: the study's arms, else every built-in arm).")
    @click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_OUT,
                  show_default=True, help="Report folder.")
    @click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="First test day (UTC).")
    @click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="End of the test days (exclusive).")
    @click.option("--seed", type=int, help="Seed (bootstrap, torch, numpy).")
    @click.option("--seeds", type=click.IntRange(min=1), help="Training seeds of the LLM arms "
                  "(seed, seed+1, ...; default 1). Counting arms run once.")
    @click.option("--tune", "tune", is_flag=True, help="First choose the LLM stack on the "
                  "validation days before the start ([tune] of --config; `hybridrec tune`).")
    @click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
    def backtest(
        config_path: Path | None, dataset: str | None, arms: str | None, out: Path,
        start: Any, end: Any, seed: int | None, seeds: int | None, tune: bool, quiet: bool,
    ) -> None:
        """Replay the test days prequentially for each arm and write the report to --out."""
        from hybridrec.backtest.config import check_tune, load_backtest_config

        config = load_backtest_config(
            config_path,
            dataset=dataset,
            arms=_split_arms(arms),
            start=start.date() if start else None,
            end=end.date() if end else None,
            seed=seed,
            seeds=seeds,
        )
        if tune:
            config = config.with_tuning(True)
            check_tune(config, str(config_path) if config_path else "options")
        _run(config, out, quiet=quiet)

    @cli.command("tune")
    @click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
                  help="The study's TOML file; its [tune] table is the search space (default: "
                  "the default study and search space).")
    @click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
                  help="The pipeline file (TOML) to write: `hybridrec init WS --config OUT` deploys it.")
    @click.option("--json", "json_out", type=click.Path(path_type=Path, dir_okay=False),
                  help="Also write every candidate's validation score and the choice as JSON.")
    @click.option("--dataset", help="Dataset plugin name (default: the study's).")
    @click.option("--start", type=click.DateTime(["%Y-%m-%d"]),
                  help="The test start: the validation days end here (default: the study's).")
    @click.option("--seed", type=int, help="Training seed (default: the study's).")
    @click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
    def tune_cmd(config_path: Path | None, out: Path, json_out: Path | None, dataset: str | None,
                 start: Any, seed: int | None, quiet: bool) -> None:
        """Choose the LLM stack on the validation days before the study's start and write it as
        a pipeline file. Each candidate of the study's [tune] search space is replayed on
        those days (no later day is read) and the one markov-best's rule prefers is written."""
        import textwrap
        from datetime import timedelta

        from hybridrec.artifacts import atomic_write_bytes, atomic_write_json
        from hybridrec.backtest.config import check_tune, load_backtest_config
        from hybridrec.backtest.study import load_data, run_backtest
        from hybridrec.backtest.tune import tune_stack, tuning_lines
        from hybridrec.backtest.workspace_replay import arm_pipeline
        from hybridrec.config import pipeline_toml

        config = load_backtest_config(config_path, dataset=dataset, seed=seed)
        check_tune(config, str(config_path) if config_path else "the default study")  # before any data
        if start is not None:  # only the start matters here: the test days are not read
            first = start.date()
            config = config.model_copy(update={"start": first, "end": max(config.end, first + timedelta(days=1))})
        _quiet_libraries()
        started = time.perf_counter()
        catalog, transitions = load_data(config)
        tuned = tune_stack(config, catalog, transitions, run=run_backtest, progress=not quiet)
        entry = tuned.report
        study = str(config_path) if config_path else "the default study"
        said = (f"Written by `hybridrec tune` from {study} ({config.dataset}): the stack of arm "
                f"{entry['arm']!r} chosen on the validation days {entry['window'][0]} to "
                f"{entry['window'][1]} (exclusive), seed {entry['seed']}: {entry['chosen']}.")
        header = "\n".join([*textwrap.wrap(said, 94), f"`hybridrec init WS --config {out.name}` deploys it."])
        # the deployed pipeline: the backtest's own choices on the days before the start applied
        _, pipeline = arm_pipeline(tuned.config, entry["arm"], tuned.history)
        if pipeline.evidence is not None:  # the candidates' estimator chosen for the start
            entry["chosen_config"]["evidence"] = pipeline.evidence.model_dump(mode="json")
        atomic_write_bytes(out, pipeline_toml(pipeline, header=header).encode("utf-8"))
        if json_out is not None:
            atomic_write_json(json_out, entry)
        if not quiet:
            click.echo("\n".join(tuning_lines(entry)))
            click.echo(f"pipeline: {out} ({time.perf_counter() - started:.0f} s)")

    @cli.command("demo")
    @click.option("--quick", is_flag=True, help="Two weeks of test days and cheaper fine-tunes (<= 3 min).")
    @click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=DEFAULT_OUT,
                  show_default=True, help="Report folder.")
    @click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
                  help="Training seeds of the LLM arms (0, 1, ...). Each further seed replays "
                  "the LLM arms again.")
    @click.option("--tune", "tune", is_flag=True, help="First choose the LLM stack on the 14 "
                  "validation days (`hybridrec tune`'s default search space; about 12 more minutes).")
    @click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
    def demo(quick: bool, out: Path, seeds: int, tune: bool, quiet: bool) -> None:
        """The default study on ML-1M with every arm (2000-06-01 to 2000-12-31), seed 0.

        About 15 minutes on a 2-core CPU (each further seed about as long again); --quick takes about a
        minute. The stack is the rerank preset, whose values `hybridrec tune` keeps on these
        validation days; --tune chooses it again before the test days.
        """
        from hybridrec.backtest.config import DEMO_CLAIMS, BacktestConfig, quick_config

        config = quick_config() if quick else BacktestConfig()
        config = config.model_copy(update={"seeds": seeds, "claims": list(DEMO_CLAIMS)})
        if tune:
            config = config.with_tuning(True)
        _run(config, out, quiet=quiet)

    @cli.command("replay")
    @click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
                  help="The study's TOML file (default: the default study).")
    @click.option("--arm", required=True, help="The LLM arm to run through a workspace.")
    @click.option("--workspace", type=click.Path(path_type=Path, file_okay=False), required=True,
                  help="A new (or empty) folder for the workspace the replay drives.")
    @click.option("--out", type=click.Path(path_type=Path, file_okay=False),
                  default=Path("hybridrec-replay"), show_default=True, help="Report folder.")
    @click.option("--start", type=click.DateTime(["%Y-%m-%d"]), help="First test day (UTC).")
    @click.option("--end", type=click.DateTime(["%Y-%m-%d"]), help="End of the test days (exclusive).")
    @click.option("--check", "check", type=click.Path(path_type=Path, dir_okay=False, exists=True),
                  help="A backtest report.json over the same days: exit 1 unless the arm's n, "
                  "HR@1, HR@5 and cumulative flops agree on every day.")
    @click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
    def replay_cmd(config_path: Path | None, arm: str, workspace: Path, out: Path, start: Any,
                   end: Any, check: Path | None, quiet: bool) -> None:
        """Run the study's test days for one LLM arm through a real workspace on disk: each
        day's interactions ingested as `hybridrec update --data` does, the policy deciding at
        each day's end, every list served by the workspace's table. Writes the arm's report
        (the backtest's schema) to --out; with --check, compares it with a backtest's."""
        import json

        from hybridrec.backtest.config import load_backtest_config
        from hybridrec.backtest.report import write_report
        from hybridrec.backtest.workspace_replay import parity_differences, replay_workspace

        config = load_backtest_config(config_path, start=start.date() if start else None,
                                      end=end.date() if end else None)
        _quiet_libraries()
        started = time.perf_counter()
        report, _ = replay_workspace(config, arm, workspace, progress=not quiet)
        paths = write_report(report, out)
        entry = report["arms"][0]
        if not quiet:
            click.echo(f"{arm} through {workspace}: HR@5 {entry['metrics']['hr@5']:.4f}, "
                       f"HR@1 {entry['metrics']['hr@1']:.4f}, {entry['cost']['flops']:.4g} flops "
                       f"over {len(entry['per_day'])} days; report: {paths['json']} "
                       f"({time.perf_counter() - started:.0f} s)")
        if check is not None:
            theirs = json.loads(check.read_text())
            differences = parity_differences(report, theirs, arm)
            if differences:
                shown = "\n  ".join(differences[:20])
                more = f"\n  ... {len(differences) - 20} more" if len(differences) > 20 else ""
                raise click.ClickException(
                    f"the workspace and the backtest ({check}) disagree for {arm!r} on "
                    f"{len(differences)} day fields:\n  {shown}{more}")
            click.echo(f"parity: {arm}'s n, HR@1, HR@5 and cumulative flops equal {check}'s "
                       f"on all {len(entry['per_day'])} days")


__all__ = ["DEFAULT_OUT", "register"]
