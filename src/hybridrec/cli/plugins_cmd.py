"""``hybridrec plugins``: what is installed, and ``--options NAME``: one plugin's option schema."""

from __future__ import annotations

import json

import click

from hybridrec.interfaces import ROLES
from hybridrec.plugin_options import format_options, options_document
from hybridrec.plugins import get_plugin_manager, hook_names, hooks_of, registry


def register(cli: click.Group) -> None:
    @cli.command("plugins")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @click.option("--hooks", "show_hooks", is_flag=True, help="Also list each plugin's hooks.")
    @click.option(
        "--options", "options_of", metavar="NAME", default=None,
        help="Print the option schema of the plugin NAME: each option's type, default and "
        "description (with --json: a JSON document with the JSON schema too).",
    )
    @click.option(
        "--role", type=click.Choice(list(ROLES)), default=None,
        help="With --options: the role of NAME, when several roles have a plugin of that name.",
    )
    def plugins(as_json: bool, show_hooks: bool, options_of: str | None, role: str | None) -> None:
        """List every registered implementation: role, name, version, distribution, built-in.

        With --options NAME, print that plugin's options instead. An unknown NAME is an error
        (exit 2) that suggests the closest names."""
        reg = registry()
        if options_of is not None:
            info = reg.find(options_of, role)  # UnknownPluginError / PluginError: exit 2
            if as_json:
                click.echo(json.dumps(options_document(info), indent=2))
            else:
                click.echo(format_options(info))
            return
        if role is not None:
            raise click.UsageError("--role applies to --options NAME only")
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
            if failure.stage == "import" and "pip install 'hybridrec[" in failure.error:
                click.echo(f"not installed: plugin {failure.plugin!r}: {failure.error}", err=True)
            else:
                click.echo(f"warning: {failure}", err=True)


__all__ = [
    "register",
]
