"""``hybridrec new-plugin ROLE NAME``: write a plugin package (see :mod:`hybridrec.scaffold`)."""

from __future__ import annotations

from pathlib import Path

import click

from hybridrec.scaffold import SCAFFOLD_ROLES, new_plugin


def register(cli: click.Group) -> None:
    @cli.command("new-plugin")
    @click.argument("role", type=click.Choice(SCAFFOLD_ROLES))
    @click.argument("name")
    @click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False),
                  default=Path("."), show_default=True, help="Where the package folder goes.")
    @click.option("--force", is_flag=True, help="Overwrite the generated files of an existing folder.")
    def new_plugin_cmd(role: str, name: str, directory: Path, force: bool) -> None:
        """Write hybridrec-NAME/, a package with a ROLE plugin called NAME that installs,
        registers through its entry point and passes its generated tests (for an update
        policy: the policy state machine too), with a study that runs it as a free-named arm."""
        root = new_plugin(role, name, directory, force=force)
        click.echo(f"wrote {root}/")
        click.echo(f"  cd {root} && pip install -e . && python -m pytest")
        click.echo(f"  hybridrec plugins | grep {name}")
        if role == "update_policy":
            click.echo("  hybridrec backtest --config study.toml --out report")


__all__ = ["register"]
