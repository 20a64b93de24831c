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


__all__ = [
    "register",
]
