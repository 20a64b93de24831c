"""The ``hybridrec`` command line.

Subcommands live in modules of this package (one per area) and in plugins, through the
``register_commands(cli)`` hook. Errors that a user can fix print one clear message and exit 2;
only bugs print a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from hybridrec.errors import HybridrecError

# Core command modules, each with ``register(cli)``; one line per area of the data-flow picture.
CORE_COMMAND_MODULES: tuple[str, ...] = (
    "hybridrec.cli.plugins_cmd",
    "hybridrec.cli.config_cmd",
    "hybridrec.cli.bench_cmd",
    "hybridrec.cli.workspace_cmd",
    "hybridrec.cli.data_cmd",
    "hybridrec.cli.backtest_cmd",
    "hybridrec.cli.new_plugin_cmd",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hybridrec")
def cli() -> None:
    """hybridrec: keep LLM-powered recommenders fresh at the lowest cost."""


def _install_commands() -> None:
    for name in CORE_COMMAND_MODULES:
        importlib.import_module(name).register(cli)
    from hybridrec.plugins import get_plugin_manager

    pm = get_plugin_manager()
    for impl in reversed(pm.hook.register_commands.get_hookimpls()):
        try:
            impl.function(cli=cli)
        except Exception as exc:
            print(
                f"hybridrec: warning: plugin {impl.plugin_name!r} failed to add commands: {exc}",
                file=sys.stderr,
            )


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hybridrec`` script."""
    try:
        _install_commands()
        cli.main(args=argv, prog_name="hybridrec", standalone_mode=False)
    except HybridrecError as exc:
        if os.environ.get("HYBRIDREC_TRACEBACK", "").strip().lower() in ("1", "true", "yes", "on"):
            traceback.print_exception(exc)  # the plugin's own traceback, as the cause
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = [
    "CORE_COMMAND_MODULES",
    "cli",
    "main",
]
