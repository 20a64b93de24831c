"""The update engine: executes policy actions once, the same way for a workspace and a backtest.

* :mod:`~hybridrec.engine.actions` — estimate → run → guardrails → veto hook → record → promote,
  against a :class:`~hybridrec.versions.VersionStore`;
* :mod:`~hybridrec.engine.state` — the :class:`~hybridrec.types.SystemState` a policy sees, drift;
* :mod:`~hybridrec.engine.components` — the configured plugins and the pricing of each action;
* :mod:`~hybridrec.engine.tables` — table generation with delta regeneration and de-duplication;
* :mod:`~hybridrec.engine.work` — the bodies of a fine-tune and a knowledge refresh;
* :mod:`~hybridrec.engine.update` — one update of a workspace (``hybridrec update``).
"""

from hybridrec.engine.actions import (
    ActionOutcome,
    FutureDataError,
    check_window,
    execute,
    guardrail_reasons,
    veto,
)
from hybridrec.engine.components import PIPELINE_ROLES, Pipeline, check_config, resolve_roles
from hybridrec.engine.state import SIGNALS_DEFAULTS, drift_stats, system_state
from hybridrec.engine.update import UpdateReport, run_update

__all__ = [
    "PIPELINE_ROLES",
    "SIGNALS_DEFAULTS",
    "ActionOutcome",
    "FutureDataError",
    "Pipeline",
    "UpdateReport",
    "check_config",
    "check_window",
    "drift_stats",
    "execute",
    "guardrail_reasons",
    "resolve_roles",
    "run_update",
    "system_state",
    "veto",
]
