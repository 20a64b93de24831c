"""``hybridrec config``: validate and show pipeline configs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from hybridrec.config import PLUGIN_ROLES, load_config


def register(cli: click.Group) -> None:
    @cli.group("config")
    def config() -> None:
        """Pipeline configuration files."""

    @config.command("validate")
    @click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
    @click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                  help="Override a value (highest precedence), e.g. generator.options.preset=tiny.")
    @click.option("--json", "as_json", is_flag=True, help="Print the resolved config as JSON.")
    def validate(file: Path, overrides: tuple[str, ...], as_json: bool) -> None:
        """Check FILE as `hybridrec init` does: every plugin exists and its options are valid,
        and the serving backend exists (the dataset plugin, for backtests, is checked too)."""
        from hybridrec.engine import check_config

        cfg = load_config(file, overrides=overrides)
        resolved = check_config(cfg, PLUGIN_ROLES, source=str(file))
        if as_json:
            out = cfg.model_dump(mode="json")
            for role in PLUGIN_ROLES:
                out[role]["options"] = resolved[role].options.model_dump(mode="json")
            click.echo(json.dumps(out, indent=2))
            return
        click.echo(f"{file}: valid")
        for role in PLUGIN_ROLES:
            r = resolved[role]
            click.echo(f"  {role:<16} {r.name:<20} {r.options.model_dump(mode='json')}")

    @config.command("show")
    @click.argument("workspace", required=False, type=click.Path(path_type=Path, file_okay=False))
    @click.option("--preset", "preset", default=None, metavar="NAME",
                  help="Show a shipped preset instead of a workspace's config.")
    @click.option("--json", "as_json", is_flag=True,
                  help="Print the whole config as JSON (the form report.json records under "
                       "arms[].config.pipeline).")
    def show(workspace: Path | None, preset: str | None, as_json: bool) -> None:
        """Print the pipeline WORKSPACE runs (its config fixed by `hybridrec init`), or a preset:
        the plugin and options of each role, the initial fine-tune and the serving settings."""
        from hybridrec.config import load_preset
        from hybridrec.errors import HybridrecError
        from hybridrec.presets import preset_names

        if (workspace is None) == (preset is None):
            raise HybridrecError("give a WORKSPACE or --preset NAME (presets: "
                                 f"{', '.join(preset_names())})")
        if preset is not None:
            cfg, where = load_preset(preset, overrides=()), f"preset {preset!r}"
        else:
            from hybridrec.workspace import Workspace

            assert workspace is not None
            cfg, where = Workspace(workspace).config, f"workspace {workspace}"
        data = cfg.model_dump(mode="json")
        if as_json:
            click.echo(json.dumps(data, indent=2))
            return
        click.echo(f"{where}: pipeline {cfg.name!r}" + (f" (preset {cfg.preset!r})" if cfg.preset else ""))
        if data.get("evidence") is not None:  # what the roles' evidence options below came from
            click.echo(f"  {'evidence':<16} {json.dumps(data['evidence'])}")
        for role in ("generator", "fine_tuner", "knowledge_store", "update_policy", "cost_model", "executor"):
            ref = data[role]
            click.echo(f"  {role:<16} {ref['plugin']:<10} {json.dumps(ref['options'])}")
        first = data["initial_fine_tune"]
        days = first["window_days"]
        on = ("the policy's window" if days is None else "all data before the clock"
              if days == "all" else f"the last {days:g} days")
        click.echo(f"  {'first fine-tune':<16} on {on}, options {json.dumps(first['options'])} "
                   "over fine_tuner's")
        click.echo(f"  {'serving':<16} {json.dumps(data['serving'])}")
        click.echo(f"  {'guardrails':<16} {json.dumps(data['guardrails'])}")


__all__ = [
    "register",
]
