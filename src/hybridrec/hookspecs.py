"""Hook specifications: the reference for plugin authors.

A plugin is a module (or object) with functions decorated by :data:`hybridrec.hookimpl` whose
names match the hooks below, exposed through the ``hybridrec`` entry-point group::

    [project.entry-points.hybridrec]
    my_plugin = "my_package.plugin_module"

*Registration* hooks receive a ``register`` callback (the style of simonw/llm): call it once per
implementation class; the core validates the class (right base class, ``name``, ``Options``) and
rejects duplicate names. *Decision* hooks are ``firstresult``: the first non-None answer wins.
*Notification* hooks are called on every plugin and their return values are ignored.
"""

from __future__ import annotations

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("hybridrec")
hookimpl = pluggy.HookimplMarker("hybridrec")


# -- registration ------------------------------------------------------------------------------


@hookspec
def register_generators(register: Any) -> None:
    """Register :class:`~hybridrec.interfaces.Generator` classes: ``register(MyGenerator)``."""


@hookspec
def register_fine_tuners(register: Any) -> None:
    """Register :class:`~hybridrec.interfaces.FineTuner` classes."""


@hookspec
def register_knowledge_stores(register: Any) -> None:
    """Register :class:`~hybridrec.interfaces.KnowledgeStore` classes."""


@hookspec
def register_update_policies(register: Any) -> None:
    """Register :class:`~hybridrec.interfaces.UpdatePolicy` classes."""


@hookspec
def register_cost_models(register: Any) -> None:
    """Register :class:`~hybridrec.interfaces.CostModel` classes."""


@hookspec
def register_datasets(register: Any) -> None:
    """Register :class:`~hybridrec.interfaces.Dataset` classes."""


@hookspec
def register_executors(register: Any) -> None:
    """Register :class:`~hybridrec.interfaces.TableExecutor` classes (bulk table generation)."""


@hookspec
def register_table_backends(register: Any) -> None:
    """Register serving-table backends (see :mod:`hybridrec.serving`)."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add subcommands to the ``hybridrec`` click group: ``@cli.command() def mine(): ...``."""


@hookspec
def register_bench_suites(register: Any) -> None:
    """Register benchmark suites: ``register("name", fn)`` where ``fn(quick: bool) -> dict``
    returns ``{metric: value}``; ``hybridrec bench NAME --json`` runs it."""


# -- decisions ---------------------------------------------------------------------------------


@hookspec(firstresult=True)
def veto_promotion(kind: str, candidate: dict[str, Any], current: dict[str, Any] | None) -> Any:
    """Return a reason (str) to stop ``candidate`` from being promoted, or None to allow it.

    ``kind`` is ``"adapter"``, ``"knowledge"`` or ``"table"``; ``candidate`` and ``current``
    are manifests. Called after the built-in guardrails pass. The first non-None answer wins and
    the candidate is kept with status ``needs_review`` and that reason.
    """


# -- notifications -----------------------------------------------------------------------------


@hookspec
def on_action_executed(record: Any) -> None:
    """Called with each :class:`~hybridrec.types.CostRecord` appended to a ledger."""


@hookspec
def on_version_promoted(kind: str, version: str, manifest: dict[str, Any]) -> None:
    """Called after ``version`` of ``kind`` became the served one."""


@hookspec
def on_guardrail_failed(version: str, reasons: list[str], manifest: dict[str, Any]) -> None:
    """Called when an adapter is held for review instead of promoted."""


__all__ = [
    "hookimpl",
    "hookspec",
    "on_action_executed",
    "on_guardrail_failed",
    "on_version_promoted",
    "register_bench_suites",
    "register_commands",
    "register_cost_models",
    "register_datasets",
    "register_executors",
    "register_fine_tuners",
    "register_generators",
    "register_knowledge_stores",
    "register_table_backends",
    "register_update_policies",
    "veto_promotion",
]
