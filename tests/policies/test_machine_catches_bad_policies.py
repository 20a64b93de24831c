"""The policy state machine fails on policies that break each invariant (it can fail)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import ClassVar

import pytest
from hybridrec_policies.policies import HybridPolicy
from hypothesis import Phase

from hybridrec.testing.policy_machine import make_policy_machine
from hybridrec.types import (
    Action,
    FineTune,
    RefreshKnowledge,
    RegenerateTable,
    SystemState,
    TimeWindow,
)


class Reckless(HybridPolicy):
    """Everything, every step: ignores budget and pending fine-tunes."""

    name: ClassVar[str] = "reckless"

    def decide(self, state: SystemState) -> list[Action]:
        return [FineTune(window=TimeWindow.ending_at(state.data_until, 30)),
                RefreshKnowledge(window=TimeWindow.ending_at(state.data_until, 14)), RegenerateTable()]


class Clairvoyant(HybridPolicy):
    name: ClassVar[str] = "clairvoyant"

    def decide(self, state: SystemState) -> list[Action]:
        return [RefreshKnowledge(window=TimeWindow.ending_at(state.now + timedelta(days=1), 14))]


class Moody(HybridPolicy):
    name: ClassVar[str] = "moody"
    _calls = itertools.count()

    def decide(self, state: SystemState) -> list[Action]:
        return [RegenerateTable()] if next(self._calls) % 2 else []


class Lazy(HybridPolicy):
    """Claims a two-day knowledge bound but never refreshes."""

    name: ClassVar[str] = "lazy"

    def decide(self, state: SystemState) -> list[Action]:
        return []


class Sneaky(HybridPolicy):
    """Declares no signal (as hybrid does) but refreshes on measured drift."""

    name: ClassVar[str] = "sneaky"

    def decide(self, state: SystemState) -> list[Action]:
        if state.drift.top5_jaccard is not None and state.drift.top5_jaccard < 0.5:
            return [RefreshKnowledge(window=TimeWindow.ending_at(state.data_until, 14)), RegenerateTable()]
        return super().decide(state)


@pytest.mark.parametrize("policy_cls", [Reckless, Clairvoyant, Moody, Lazy, Sneaky])
def test_machine_rejects_a_broken_policy(policy_cls: type[HybridPolicy]) -> None:
    case = make_policy_machine(policy_cls, max_examples=60, steps=20, phases=[Phase.generate],
                               derandomize=True)
    with pytest.raises(AssertionError):
        case("runTest").runTest()


class Forgetful(HybridPolicy):
    """The hybrid policy without its regenerations: new knowledge is never served."""

    name: ClassVar[str] = "forgetful"

    def decide(self, state: SystemState) -> list[Action]:
        return [a for a in super().decide(state) if not isinstance(a, RegenerateTable)]


def test_machine_rejects_a_change_without_a_regeneration_unless_told_otherwise() -> None:
    strict = make_policy_machine(Forgetful, max_examples=60, steps=20, phases=[Phase.generate],
                                 derandomize=True)
    with pytest.raises(AssertionError, match="not followed by a regeneration"):
        strict("runTest").runTest()
    # Every other invariant holds: the check is what catches it.
    lenient = make_policy_machine(Forgetful, max_examples=60, steps=20, phases=[Phase.generate],
                                  derandomize=True, regenerate_in_decision=False)
    lenient("runTest").runTest()
