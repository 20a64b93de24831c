"""hybridrec: keep LLM-powered recommenders fresh at the lowest cost.

The names a library user needs, importable from ``hybridrec`` (loaded on first use, so
``import hybridrec`` stays cheap; see docs/python-api.md for a walk-through):

* configuration: :func:`load_config`, :func:`load_preset`, :class:`PipelineConfig`, :class:`PluginRef`;
* plugins: :func:`build` (the one factory), :func:`register_plugin`, ``hookimpl`` for plugin
  authors, the interfaces (:class:`Generator`, :class:`FineTuner`, :class:`KnowledgeStore`,
  :class:`UpdatePolicy`, :class:`CostModel`, :class:`Dataset`, :class:`TableExecutor`) and the
  capabilities (:class:`PromptEncoder`, :class:`TrainableGenerator`);
* data: :func:`load_prepared`, :func:`prepare`, :func:`load_dataset`;
* the engine and the workspace: :class:`Workspace`, :func:`run_update`, :class:`UpdateReport`,
  :class:`Pipeline`;
* the backtest: :class:`BacktestConfig`, :func:`run_backtest`, :func:`write_report`;
* core types: :class:`ClusterCatalog`, :class:`TransitionSet`, :class:`TimeWindow`,
  :class:`SystemState`, the actions (:class:`FineTune`, :class:`RefreshKnowledge`,
  :class:`RegenerateTable`, :class:`Noop`), :class:`Rankings`, :class:`EvidenceBatch`,
  :class:`CostRecord`, and :class:`HybridrecError`.
"""

from __future__ import annotations

import importlib
from typing import Any

from hybridrec.hookspecs import hookimpl
from hybridrec.kernels import pin_cpu_kernels as _pin_cpu_kernels

# Before any of hybridrec's torch code runs (ATen and MKL choose their CPU kernels once): the same
# floating-point results on any x86-64 CPU with AVX2. HYBRIDREC_NATIVE_CPU_KERNELS=1 opts out.
_pin_cpu_kernels()

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported on first access).
_EXPORTS: dict[str, str] = {
    # configuration
    "EvidenceConfig": "hybridrec.config",
    "PipelineConfig": "hybridrec.config",
    "PluginRef": "hybridrec.config",
    "load_config": "hybridrec.config",
    "load_preset": "hybridrec.config",
    # plugins
    "build": "hybridrec.plugins",
    "register_plugin": "hybridrec.plugins",
    "CostModel": "hybridrec.interfaces",
    "Dataset": "hybridrec.interfaces",
    "FineTuner": "hybridrec.interfaces",
    "Generator": "hybridrec.interfaces",
    "KnowledgeSnapshot": "hybridrec.interfaces",
    "KnowledgeStore": "hybridrec.interfaces",
    "TableExecutor": "hybridrec.interfaces",
    "UpdatePolicy": "hybridrec.interfaces",
    "PromptEncoder": "hybridrec.capabilities",
    "TrainableGenerator": "hybridrec.capabilities",
    # data
    "load_dataset": "hybridrec.data",
    "load_prepared": "hybridrec.data",
    "prepare": "hybridrec.data",
    # engine and workspace
    "Pipeline": "hybridrec.engine",
    "UpdateReport": "hybridrec.engine",
    "run_update": "hybridrec.engine",
    "Workspace": "hybridrec.workspace",
    # backtest
    "BacktestConfig": "hybridrec.backtest",
    "run_backtest": "hybridrec.backtest",
    "write_report": "hybridrec.backtest",
    # core types
    "ClusterCatalog": "hybridrec.types",
    "CostRecord": "hybridrec.types",
    "EvidenceBatch": "hybridrec.types",
    "FineTune": "hybridrec.types",
    "Noop": "hybridrec.types",
    "Rankings": "hybridrec.types",
    "RefreshKnowledge": "hybridrec.types",
    "RegenerateTable": "hybridrec.types",
    "SystemState": "hybridrec.types",
    "TimeWindow": "hybridrec.types",
    "TransitionSet": "hybridrec.types",
    "HybridrecError": "hybridrec.errors",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hybridrec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "BacktestConfig",
    "ClusterCatalog",
    "CostModel",
    "CostRecord",
    "Dataset",
    "EvidenceBatch",
    "EvidenceConfig",
    "FineTune",
    "FineTuner",
    "Generator",
    "HybridrecError",
    "KnowledgeSnapshot",
    "KnowledgeStore",
    "Noop",
    "Pipeline",
    "PipelineConfig",
    "PluginRef",
    "PromptEncoder",
    "Rankings",
    "RefreshKnowledge",
    "RegenerateTable",
    "SystemState",
    "TableExecutor",
    "TimeWindow",
    "TrainableGenerator",
    "TransitionSet",
    "UpdatePolicy",
    "UpdateReport",
    "Workspace",
    "__version__",
    "build",
    "hookimpl",
    "load_config",
    "load_dataset",
    "load_prepared",
    "load_preset",
    "prepare",
    "register_plugin",
    "run_backtest",
    "run_update",
    "write_report",
]
