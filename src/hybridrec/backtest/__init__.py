"""The backtest: a prequential daily replay of every arm over a test window and its
report (both specified in docs/protocol.md).

Read in this order: :mod:`~hybridrec.backtest.protocol` (days, the :class:`Arm` contract,
backoff fill), :mod:`~hybridrec.backtest.runner` (the replay loop),
:mod:`~hybridrec.backtest.baselines` (markov-all, markov-recent, markov-backoff, markov-best,
popularity),
:mod:`~hybridrec.backtest.llm` (policy-driven LLM arms over a shared work cache),
:mod:`~hybridrec.backtest.metrics`, :mod:`~hybridrec.backtest.report`,
:mod:`~hybridrec.backtest.study` (composition from a :class:`BacktestConfig`).
"""

from hybridrec.backtest.config import (
    ALL_ARMS,
    BASELINE_ARMS,
    LLM_ARMS,
    ArmSpec,
    BacktestConfig,
    LLMSettings,
    load_backtest_config,
    quick_config,
)
from hybridrec.backtest.protocol import Arm, Day, Served
from hybridrec.backtest.report import SCHEMA, build_report, verdict, write_report
from hybridrec.backtest.runner import ProtocolViolation, ReplayResult, replay
from hybridrec.backtest.study import StudyInterrupted, run_backtest

__all__ = [
    "ALL_ARMS",
    "BASELINE_ARMS",
    "LLM_ARMS",
    "SCHEMA",
    "Arm",
    "ArmSpec",
    "BacktestConfig",
    "Day",
    "LLMSettings",
    "ProtocolViolation",
    "ReplayResult",
    "Served",
    "StudyInterrupted",
    "build_report",
    "load_backtest_config",
    "quick_config",
    "replay",
    "run_backtest",
    "verdict",
    "write_report",
]
