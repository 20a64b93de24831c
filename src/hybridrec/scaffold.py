"""``hybridrec new-plugin ROLE NAME``: write a plugin package that installs, registers and passes
its tests as generated.

:func:`new_plugin` writes ``hybridrec-NAME/`` (a ``src/`` layout package ``hybridrec_NAME``)::

    hybridrec-NAME/
      pyproject.toml            # the hybridrec entry point NAME -> hybridrec_NAME
      README.md                 # install, list, test, use in a study
      study.toml                # a small study with NAME as a free-named arm (update_policy)
      src/hybridrec_NAME/__init__.py    # the hook implementation that registers the class
      src/hybridrec_NAME/<module>.py    # the plugin: Options and the role's methods
      tests/test_NAME.py        # registration, options, behaviour, the role's contract

Roles: ``update_policy`` (a budget-aware refresh / fine-tune policy whose tests include the
policy state machine of :mod:`hybridrec.testing.policy_machine`) and ``cost_model`` (a
per-token flops model whose tests check determinism and the ledger record). The other roles
have richer contracts: start from ``examples/third_party_plugin`` (a knowledge store) and
docs/roles.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from hybridrec.errors import HybridrecError

#: The roles :func:`new_plugin` can scaffold.
SCAFFOLD_ROLES: tuple[str, ...] = ("update_policy", "cost_model")
NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


class ScaffoldError(HybridrecError):
    """A plugin package cannot be written (bad role or name, folder already there)."""


@dataclass(frozen=True)
class PluginNames:
    """The names of a scaffolded plugin: ``name`` (registry and entry point), ``dist`` (the
    distribution), ``package`` (the import package), ``cls`` (the class), ``module`` (the file
    holding the class, without ``.py``)."""

    name: str
    dist: str
    package: str
    cls: str
    module: str

    @classmethod
    def of(cls, role: str, name: str) -> PluginNames:
        stem = "".join(part.capitalize() for part in name.split("-"))
        suffix = {"update_policy": "Policy", "cost_model": "CostModel"}[role]
        return cls(name=name, dist=f"hybridrec-{name}", package="hybridrec_" + name.replace("-", "_"),
                   cls=stem if stem.endswith(suffix) else stem + suffix,
                   module={"update_policy": "policy", "cost_model": "cost"}[role])


PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "The $name $role_text for hybridrec"
requires-python = ">=3.11"
dependencies = ["hybridrec"]

[project.entry-points.hybridrec]
$name = "$package"

[tool.setuptools.packages.find]
where = ["src"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

INIT = '''\
"""$dist: the ``$name`` $role_text for hybridrec, registered through the ``hybridrec``
entry point (pyproject.toml)."""

from typing import Any

from hybridrec import hookimpl
from $package.$module import $cls

__version__ = "0.1.0"


@hookimpl
def $hook(register: Any) -> None:
    register($cls)
'''

POLICY = '''\
"""The ``$name`` update policy (docs/roles.md § UpdatePolicy has the contract).

Fine-tune when the adapter's training data is ``fine_tune_every_days`` old, refresh the
knowledge when it is ``refresh_every_days`` behind the data, follow either with a regeneration
(users only see what a regeneration serves), and never spend more than the budget left.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from hybridrec.interfaces import UpdatePolicy
from hybridrec.types import (
    Action,
    FineTune,
    RefreshKnowledge,
    RegenerateTable,
    SystemState,
    TimeWindow,
)

UNITS = ("flops", "seconds", "money")


class ${cls}Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # a typo in a study is an error

    refresh_every_days: float = Field(default=2.0, gt=0, description="Refresh the knowledge (and regenerate) when it is this many days behind the data.")
    knowledge_days: float = Field(default=14.0, gt=0, description="Days of data a knowledge snapshot reads.")
    fine_tune_every_days: float = Field(default=30.0, gt=0, description="Fine-tune when the adapter's training data is this many days old (and not again within that many days of an attempt).")
    train_days: float = Field(default=30.0, gt=0, description="Days of data a fine-tune trains on.")


class $cls(UpdatePolicy):
    """Pure: the decision depends on the state and the options only."""

    name: ClassVar[str] = "$name"
    Options: ClassVar[type[BaseModel]] = ${cls}Options
    #: the measured signals decide() reads: add "drift" / "recall" / "freshness" when it reads state.drift
    needs: ClassVar[frozenset[str]] = frozenset()

    def decide(self, state: SystemState) -> list[Action]:
        o: ${cls}Options = self.options
        rag: list[Action] = [
            RefreshKnowledge(window=TimeWindow.ending_at(state.data_until, o.knowledge_days),
                             reason=f"knowledge {o.refresh_every_days:g} days behind the data"),
            RegenerateTable(use_knowledge=True, reason="serve the new knowledge"),
        ]
        alternatives: list[list[Action]] = []  # in order of preference; the first that fits
        if self._fine_tune_due(state):
            alternatives.append([
                FineTune(window=TimeWindow.ending_at(state.data_until, o.train_days),
                         reason=f"adapter data {o.fine_tune_every_days:g} days old"),
                *rag,
            ])
        if _behind(state, state.knowledge_until, o.refresh_every_days):
            alternatives.append(rag)
        if state.table_version is None:
            alternatives.append([RegenerateTable(use_knowledge=True, reason="no table yet")])
        for actions in alternatives:
            if _fits(state, actions):
                return actions
        return []

    def knowledge_bound(self) -> timedelta | None:
        return timedelta(days=self.options.refresh_every_days)

    def _fine_tune_due(self, state: SystemState) -> bool:
        every = self.options.fine_tune_every_days
        if state.pending_fine_tune or not _behind(state, state.adapter_trained_until, every):
            return False
        attempts = [r.at for r in state.ledger if r.action == "fine_tune"]
        return not attempts or state.now - max(attempts) >= timedelta(days=every)


def _behind(state: SystemState, until: datetime | None, days: float) -> bool:
    """Whether an artifact built from data until ``until`` is ``days`` behind (or missing)."""
    return until is None or state.data_until - until >= timedelta(days=days)


def _fits(state: SystemState, actions: list[Action]) -> bool:
    """Whether ``actions``, priced by ``state.estimates``, fit the budget left in every unit."""
    for unit in UNITS:
        if getattr(state.budget, unit) is None:
            continue
        cost = sum(float(getattr(state.estimates[a.kind], unit))
                   for a in actions if a.kind in state.estimates)
        if cost > state.budget_left(unit) + 1e-9 * max(1.0, cost):
            return False
    return True
'''

#: The registration tests both generated test modules start with (``$role`` and ``$role_key``
#: substituted): the ``hybridrec_plugin`` fixture registers the module for one test, whether or not
#: the package is also installed.
REGISTRATION_TESTS = """\
def test_the_module_registers_the_${role_key}_under_its_name(hybridrec_plugin):
    hybridrec_plugin($package)
    assert plugins.get("$role", "$name") is $cls


def test_once_installed_the_${role_key}_is_found_by_name():
    try:
        importlib.metadata.distribution("$dist")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("$dist is not installed")
    assert plugins.get("$role", "$name") is $cls


"""

POLICY_TESTS = '''\
"""Tests of the ``$name`` update policy (generated by ``hybridrec new-plugin``)."""

from __future__ import annotations

import importlib.metadata
from datetime import datetime, timedelta, timezone

import pytest

import $package
from hybridrec import plugins
from hybridrec.errors import ConfigError
from hybridrec.testing.policy_machine import make_policy_machine
from hybridrec.types import Budget, CostEstimate, SystemState
from $package.$module import $cls

NOW = datetime(2024, 1, 31, tzinfo=timezone.utc)


${registration_tests}def test_options_are_validated():
    with pytest.raises(ConfigError, match="refresh_every_days"):
        $cls({"refresh_every_days": -1})


def test_a_new_system_is_trained_refreshed_and_served():
    kinds = [a.kind for a in $cls().decide(SystemState(now=NOW, data_until=NOW))]
    assert kinds == ["fine_tune", "refresh_knowledge", "regenerate_table"]


def test_stale_knowledge_is_refreshed_within_the_budget():
    fresh_adapter = {"adapter_version": "a", "adapter_trained_until": NOW, "table_version": "t"}
    state = SystemState(now=NOW, data_until=NOW, knowledge_until=NOW - timedelta(days=3),
                        knowledge_version="k", **fresh_adapter)
    assert [a.kind for a in $cls().decide(state)] == ["refresh_knowledge", "regenerate_table"]
    poor = state.model_copy(update={
        "budget": Budget(flops=10.0),
        "estimates": {"refresh_knowledge": CostEstimate(action="refresh_knowledge", flops=8.0),
                      "regenerate_table": CostEstimate(action="regenerate_table", flops=8.0)}})
    assert $cls().decide(poor) == []


# Budget, pending fine-tunes, the knowledge bound, determinism, no future data, needs.
TestPolicyInvariants = make_policy_machine(lambda: $cls(), max_examples=20, steps=20)
'''

COST = '''\
"""The ``$name`` cost model (docs/roles.md § CostModel has the contract): flops per token of
work, seconds at a sustained throughput, money at a price per hour."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from hybridrec.interfaces import CostModel
from hybridrec.types import ActionKind, CostEstimate, Workload


class ${cls}Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    flops_per_parameter_token: float = Field(default=6.0, gt=0, description="Training flops per parameter and token (inference counts a third).")
    throughput_flops_per_s: float = Field(default=5.0e10, gt=0, description="Sustained flops per second.")
    price_per_hour: float = Field(default=0.05, ge=0, description="Price of an hour of compute.")


class $cls(CostModel):
    """Deterministic in (action, workload)."""

    name: ClassVar[str] = "$name"
    Options: ClassVar[type[BaseModel]] = ${cls}Options

    def estimate(self, action: ActionKind, workload: Workload) -> CostEstimate:
        o: ${cls}Options = self.options
        params = float(workload.model_parameters)
        if action == "fine_tune":
            flops = o.flops_per_parameter_token * params * workload.train_tokens * workload.train_epochs
        elif action == "regenerate_table":
            flops = o.flops_per_parameter_token / 3 * params * workload.inference_tokens
        else:  # refresh_knowledge, noop: a pass over the data
            flops = float(workload.transitions + workload.contexts)
        seconds = flops / o.throughput_flops_per_s
        return CostEstimate(action=action, flops=flops, seconds=seconds,
                            money=seconds / 3600 * o.price_per_hour, model=self.name)
'''

COST_TESTS = '''\
"""Tests of the ``$name`` cost model (generated by ``hybridrec new-plugin``)."""

from __future__ import annotations

import importlib.metadata
from datetime import datetime, timezone

import pytest

import $package
from hybridrec import plugins
from hybridrec.errors import ConfigError
from hybridrec.types import ACTION_KINDS, Workload
from $package.$module import $cls

WORK = Workload(model_parameters=1000, train_tokens=500, inference_tokens=200, transitions=50, contexts=90)


${registration_tests}def test_options_are_validated():
    with pytest.raises(ConfigError, match="price_per_hour"):
        $cls({"price_per_hour": -1})


@pytest.mark.parametrize("action", ACTION_KINDS)
def test_estimates_are_deterministic_and_non_negative(action):
    first, again = $cls().estimate(action, WORK), $cls().estimate(action, WORK)
    assert first == again and first.action == action
    assert first.flops >= 0 and first.seconds >= 0 and first.money >= 0


def test_the_ledger_record_keeps_the_estimate_and_the_measured_seconds():
    model = $cls()
    estimate = model.estimate("fine_tune", WORK)
    record = model.record("fine_tune", estimate, at=datetime(2024, 1, 1, tzinfo=timezone.utc), seconds=2.5)
    assert record.flops == estimate.flops and record.seconds == 2.5 and record.status == "ok"
'''

README = '''\
# $dist

The `$name` $role_text for hybridrec, generated by
`hybridrec new-plugin $role $name`.

```bash
pip install -e .                     # registers the entry point `$name`
hybridrec plugins | grep $name       # listed, not built-in
python -m pytest                     # the generated tests
$usage
```

Edit `src/$package/$module.py`; the contract of the role is docs/roles.md of hybridrec.
'''

STUDY = '''\
# A small study with the $name policy as a free-named arm, beside a built-in arm and a counting
# baseline, on hybridrec's synthetic data set with the default LLM stack:
#   hybridrec backtest --config study.toml --out report
dataset = "synthetic"
dataset_options = { n_interactions = 20000, days = 40, n_clusters = 12, seed = 0 }
start = 2000-01-31
end = 2000-02-10
reference = "$name"

[arms.$name]
policy = { plugin = "$name", options = { refresh_every_days = 2.0 } }

[arms.hybrid]

[arms.markov-all]
'''


def new_plugin(role: str, name: str, directory: Path | str = ".", *, force: bool = False) -> Path:
    """Write the package of a new ``role`` plugin called ``name`` into
    ``directory/hybridrec-NAME`` and return that folder.

    ``name`` is lowercase letters and digits in dash-separated words (``my-policy``). Raises
    :class:`ScaffoldError` for a role not in :data:`SCAFFOLD_ROLES`, a bad name, or a folder
    that exists (unless ``force``: then the generated files are overwritten, others kept)."""
    if role not in SCAFFOLD_ROLES:
        raise ScaffoldError(
            f"new-plugin writes {' and '.join(SCAFFOLD_ROLES)} plugins, not {role!r}; for the "
            "other roles start from examples/third_party_plugin (a knowledge store) and "
            "docs/roles.md")
    if not NAME_PATTERN.fullmatch(name):
        raise ScaffoldError(f"plugin name {name!r}: use lowercase letters and digits in "
                            "dash-separated words, starting with a letter (e.g. 'my-policy')")
    names = PluginNames.of(role, name)
    root = Path(directory) / names.dist
    if root.exists() and not force:
        raise ScaffoldError(f"{root} already exists (--force overwrites the generated files)")
    policy = role == "update_policy"
    values = {
        "name": name, "dist": names.dist, "package": names.package, "cls": names.cls,
        "module": names.module, "role": role,
        "role_text": "update policy" if policy else "cost model",
        "role_key": "policy" if policy else "cost_model",
        "hook": "register_update_policies" if policy else "register_cost_models",
        "usage": ("hybridrec backtest --config study.toml --out report   # a free-named arm"
                  if policy else f'# in a study: [arms.NAME] preset = "hybrid", cost_model = {{ plugin = "{name}" }}'),
    }
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"src/{names.package}/__init__.py": INIT,
        f"src/{names.package}/{names.module}.py": POLICY if policy else COST,
        f"tests/test_{names.package.removeprefix('hybridrec_')}.py": POLICY_TESTS if policy else COST_TESTS,
    }
    if policy:
        files["study.toml"] = STUDY
    values["registration_tests"] = Template(REGISTRATION_TESTS).substitute(values)
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values), encoding="utf-8")
    return root


__all__ = ["SCAFFOLD_ROLES", "PluginNames", "ScaffoldError", "new_plugin"]
