"""Helpers for testing hybridrec plugins.

* :mod:`hybridrec.testing.pytest_plugin` (loaded automatically by pytest once hybridrec is
  installed) provides the ``hybridrec_plugin`` fixture: ``hybridrec_plugin(obj)`` registers a
  plugin object with hook implementations for one test (also when the plugin is installed) and
  restores the registry afterwards.
* :mod:`hybridrec.testing.fakes` has small, deterministic fake plugins for every role
  (``fake-gen``, ``fake-prompt-gen``, ``fake-ft``, ``fake-store``, ``fake-cost``) and a synthetic
  interaction-log writer, to test a plugin or a pipeline without a model.
* :mod:`hybridrec.testing.crash_driver` runs the CLI with the fakes and SIGKILLs it at a named
  point or durable step (``python -m hybridrec.testing.crash_driver ARGS``);
  :mod:`hybridrec.testing.faultbench` is the ``fault`` bench suite built on it.
* :mod:`hybridrec.testing.cli` has ``run_cli(capsys, *args)``: the CLI in-process, its exit
  code and output.
* :mod:`hybridrec.testing.strategies` has hypothesis strategies for the core types.
* :mod:`hybridrec.testing.policy_machine` has ``make_policy_machine(factory)``: a hypothesis
  stateful test of the update-policy invariants (budget, pending fine-tunes, knowledge freshness,
  determinism, no future data) to run against your own policy.
* :mod:`hybridrec.testing.store_contract` has ``make_store_contract(factory)``: hypothesis tests
  of the knowledge-store contract (manifest, padding, window, open, determinism, corruption).
"""


__all__ = [
    "cli",
    "fakes",
    "policy_machine",
    "store_contract",
    "strategies",
]
