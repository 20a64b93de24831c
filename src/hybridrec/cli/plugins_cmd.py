"""``hybridrec plugins``: what is installed."""

from __future__ import annotations

import json

import click

from hybridrec.plugins import get_plugin_manager, hook_names, hooks_of, registry


def register(cli: click.Group) -> None:
    @cli.command("plugins")
    @click.option("--json", "as_json", is_flag=True, help="Print a JSON list of implementations.")
    @click.option("--hooks", "show_hooks", is_flag=True, help="Also list each plugin's hooks.")
    def plugins(as_json: bool, show_hooks: bool) -> None:
        """List every registered implementation: role, name, version, distribution, built-in."""
        reg = registry()
        rows = [info.as_dict() for info in reg.all()]
        if show_hooks:
            for row in rows:
                row["hooks"] = hooks_of(row["plugin"])
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        else:
            header = f"{'ROLE':<16} {'NAME':<20} {'VERSION':<9} {'DISTRIBUTION':<26} BUILT-IN"
            click.echo(header)
            for row in rows:
                click.echo(
                    f"{row['role']:<16} {row['name']:<20} {row['version'] or '-':<9} "
                    f"{row['distribution'] or '(in code)':<26} {'yes' if row['builtin'] else 'no'}"
                )
            if show_hooks:
                click.echo("\nplugins and their hooks:")
                pm = get_plugin_manager()
                for name, _plugin in sorted(pm.list_name_plugin()):
                    click.echo(f"  {name}: {', '.join(hooks_of(name)) or '(none)'}")
                click.echo(f"\nhooks defined by hybridrec: {', '.join(hook_names())}")
        for failure in reg.errors:
            click.echo(f"warning: {failure}", err=True)


__all__ = [
    "register",
]
