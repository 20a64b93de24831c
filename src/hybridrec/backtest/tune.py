"""Validation chooses the LLM stack: the ``[tune]`` search on the days before the test start
(docs/protocol.md, "Validation chooses the LLM stack").

* **Where.** The ``validation_days`` days before the start (markov-best's days by default).
  Each candidate is a study of those days run like the test days (:func:`run_backtest`): its
  base model trained on the data before them, its refreshes and regenerations as its policy
  decides, every day scored prequentially. Only rows before the start are passed in, so no
  test day can be read.
* **What.** The study's stack as configured is the incumbent; each value of a ``[tune]``
  dimension that differs from it is one candidate, changed in that dimension only (the
  evidence's recent window and candidate slots, the tuned arm's policy options, the fine-tune
  recipe). Candidates that differ only in the policy share one replay (one base); every other
  candidate trains its own. A fine-tune recipe is compared with the incumbent's recipe under
  ``fine_tune_probe``, which makes a fine-tune run inside the days (a monthly one would not).
* **The rule** (markov-best's): the best mean of the metric wins, except that a cheaper
  candidate whose day-level paired CI against the best includes zero is a tie and wins;
  equal costs (within 1%) keep the earlier candidate, the incumbent first. Each dimension is
  decided on its own and the decisions apply together: when several changed, their combination
  is scored, and the best single change replaces it only if it beats it (paired CI above zero).
* **The floor.** When the chosen stack loses to markov-best on those days (paired CI below
  zero), the cheaper ties may have cost it that comparison: each dimension's best mean is taken
  instead (their combination scored), and that stack replaces the choice if it scores higher.
* **Against counting.** The chosen stack's validation score is paired with markov-best's on the
  same days, and the report says plainly when no learned candidate beats it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from hybridrec.backtest.config import ArmSpec, BacktestConfig, TuneConfig, check_tune
from hybridrec.backtest.metrics import DayGroups, paired_bootstrap, per_transition
from hybridrec.config import EvidenceConfig, PluginRef
from hybridrec.errors import ConfigError, DataError
from hybridrec.plugins import resolve_plugin
from hybridrec.types import ClusterCatalog, TransitionSet, datetime_to_ts

#: Costs within this relative difference are equal (the earlier candidate is kept).
COST_TIE = 0.01
#: Built-in arms whose cadence the ``hybrid`` preset's options set (as DEFAULT_POLICIES derive
#: them), so a tuned cadence keeps the comparison with ``hybrid`` about the fine-tunes alone:
#: hybrid's option -> (arm, that arm's option).
FOLLOWERS: dict[str, tuple[str, str]] = {
    "rag_every_days": ("rag-only", "period_days"),
    "fine_tune_every_days": ("ft-monthly", "period_days"),
}
CONFIGURED = "configured"


@dataclass
class Candidate:
    """One stack scored on the validation days: ``config`` is the study with it applied."""

    label: str
    dimension: str
    value: Any
    config: BacktestConfig
    probe: bool = False
    run: int | None = None
    values: np.ndarray | None = field(default=None, repr=False)
    flops: float | None = None

    @property
    def scored(self) -> bool:
        return self.values is not None

    def score(self) -> float:
        assert self.values is not None
        return float(self.values.mean()) if self.values.size else 0.0


@dataclass
class Tuning:
    """What :func:`tune_stack` chose: the study with the choice applied, the report entry, and
    the rows before the start it read (what the chosen study's own validation choices read)."""

    config: BacktestConfig
    report: dict[str, Any]
    history: TransitionSet


def _value_label(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def with_policy_options(config: BacktestConfig, changes: dict[str, Any]) -> BacktestConfig:
    """``config`` with ``changes`` made to the tuned arm's policy options (the built-in arms
    whose cadence follows ``hybrid``'s, :data:`FOLLOWERS`, follow when they were equal)."""
    arm = config.tune.arm
    spec, plan = config.arms[arm], config.arm_plan(arm)
    assert plan.policy is not None
    current = dict(plan.policy.options)
    policy = PluginRef(plugin=plan.policy.plugin, options={**current, **changes})
    if spec.policy is not None:
        return config.model_copy(update={"arms": {**config.arms, arm: spec.model_copy(update={"policy": policy})}})
    preset = spec.preset_of(arm)
    assert preset is not None
    policies = {**config.llm.policies, preset: policy}
    if preset == "hybrid":
        for option, value in changes.items():
            follower = FOLLOWERS.get(option)
            if follower is None or follower[0] not in policies:
                continue
            other = policies[follower[0]]
            if other.options.get(follower[1]) == current.get(option):
                policies[follower[0]] = PluginRef(plugin=other.plugin,
                                                  options={**other.options, follower[1]: value})
    return config.model_copy(update={"llm": config.llm.model_copy(update={"policies": policies})})


def with_change(config: BacktestConfig, dimension: str, value: Any) -> BacktestConfig:
    """``config`` changed in one ``[tune]`` dimension: ``recent_days`` (0: none) or
    ``candidates`` (the evidence recipe), ``policy.<option>``, or ``fine_tune`` (a recipe name
    of ``[tune] fine_tune``; its changes apply to the periodic fine-tunes, and the initial
    fine-tune pins the incumbent's values of the options it changes, so the base model is the
    incumbent's)."""
    llm = config.llm
    if dimension in ("recent_days", "candidates"):
        chosen = (None if int(value) == 0 else int(value)) if dimension == "recent_days" else int(value)
        recipe = EvidenceConfig.model_validate({**llm.evidence.model_dump(), dimension: chosen})
        return config.model_copy(update={"llm": llm.with_evidence(recipe)})
    if dimension.startswith("policy."):
        return with_policy_options(config, {dimension.removeprefix("policy."): value})
    if dimension == "fine_tune":
        if value == CONFIGURED:
            return config
        changes = config.tune.fine_tune[value]
        current = resolve_plugin("fine_tuner", llm.fine_tuner, "[tune]").options.model_dump(mode="json")
        unknown = sorted(set(changes) - set(current))
        if unknown:
            raise ConfigError(f"[tune] fine_tune.{value} sets {unknown}, which fine-tuner "
                              f"{llm.fine_tuner.plugin!r} does not have")
        first = dict(llm.initial_fine_tune_options)
        for key in changes:
            first.setdefault(key, current[key])
        tuner = PluginRef(plugin=llm.fine_tuner.plugin, options={**llm.fine_tuner.options, **changes})
        return config.model_copy(update={"llm": llm.model_copy(
            update={"fine_tuner": tuner, "initial_fine_tune_options": first})})
    raise ConfigError(f"[tune] has no dimension {dimension!r}")


def candidates(config: BacktestConfig) -> list[Candidate]:
    """The incumbent, then every one-dimension change ``config.tune`` declares, in run order:
    the policy's (they share the incumbent's replay), the fine-tune recipes (the incumbent's
    under the probe first), the recent windows, the candidate slots."""
    tune = config.tune
    out = [Candidate(CONFIGURED, CONFIGURED, None, config)]
    for option, values in tune.policy.items():
        for value in values:
            if _current(config, f"policy.{option}") != value:
                out.append(Candidate(f"{option}={_value_label(value)}", f"policy.{option}", value,
                                     with_change(config, f"policy.{option}", value)))
    if tune.fine_tune:
        out.append(Candidate(f"fine_tune={CONFIGURED}", "fine_tune", CONFIGURED, config, probe=True))
        out += [Candidate(f"fine_tune={name}", "fine_tune", name, with_change(config, "fine_tune", name),
                          probe=True) for name in tune.fine_tune]
    out += [Candidate(f"recent_days={v}", "recent_days", v, with_change(config, "recent_days", v))
            for v in dict.fromkeys(tune.recent_days) if v != _current(config, "recent_days")]
    out += [Candidate(f"candidates={v}", "candidates", v, with_change(config, "candidates", v))
            for v in dict.fromkeys(tune.candidates) if v != _current(config, "candidates")]
    return out


def _study(config: BacktestConfig, members: list[Candidate], first: Any, markov: bool) -> BacktestConfig:
    """The validation study that replays ``members`` (one stack) on the days from ``first``."""
    tune = config.tune
    arms: dict[str, ArmSpec] = {}
    for c in members:
        policy = c.config.arm_plan(tune.arm).policy
        assert policy is not None
        if c.probe:
            policy = PluginRef(plugin=policy.plugin, options={**policy.options, **tune.fine_tune_probe})
        arms[c.label] = ArmSpec(policy=policy)
    if markov:
        arms["markov-best"] = ArmSpec()
    base = members[0].config
    workdir = None if config.workdir is None else config.workdir / "tune" / str(members[0].run)
    return base.model_copy(update={
        "start": first, "end": config.start, "arms": arms, "seeds": 1, "claims": [],
        "reference": members[0].label, "workdir": workdir,
    }).with_tuning(False)


def _choose(pool: list[Candidate], groups: DayGroups, config: BacktestConfig, *,
            ties: bool = True) -> Candidate:
    """markov-best's rule over the scored candidates of ``pool`` (see the module docstring);
    ``ties=False``: the best mean alone (the floor's rule)."""
    scored = [c for c in pool if c.scored]
    best = max(scored, key=lambda c: c.score())  # first maximum: the earlier candidate
    if not ties:
        return best
    tied = []
    for c in scored:
        if c is best:
            tied.append(c)
            continue
        assert c.values is not None and best.values is not None
        _, (_, hi) = paired_bootstrap(c.values, best.values, groups, n_boot=config.bootstrap, seed=config.seed)
        if hi >= 0:
            tied.append(c)
    cheapest = min(float(c.flops or 0.0) for c in tied)
    return next(c for c in tied if float(c.flops or 0.0) <= cheapest * (1 + COST_TIE))


def _paired(a: Candidate | np.ndarray, b: np.ndarray, groups: DayGroups, config: BacktestConfig) -> dict[str, Any]:
    values = a.values if isinstance(a, Candidate) else a
    assert values is not None
    delta, (lo, hi) = paired_bootstrap(values, b, groups, n_boot=config.bootstrap, seed=config.seed)
    return {"delta": round(delta, 6), "ci95": [round(lo, 6), round(hi, 6)],
            "excludes_zero": bool(lo > 0 or hi < 0)}


def tune_stack(
    config: BacktestConfig, catalog: ClusterCatalog, transitions: TransitionSet, *,
    run: Callable[..., tuple[dict[str, Any], Any, Any]], progress: bool = False,
) -> Tuning:
    """Choose the LLM stack of ``config`` on its validation days (see the module docstring);
    ``run`` replays a study (:func:`hybridrec.backtest.study.run_backtest`, which calls this).

    Only the rows of ``transitions`` before ``config.start`` are read. Returns the study with
    the choice applied (``tune.enabled`` off) and the report's ``tuning`` entry: every
    candidate's validation score and cost, each dimension's choice, the chosen stack against
    markov-best, and the candidates the ``max_runs`` budget left out.
    """
    started = time.perf_counter()
    tune: TuneConfig = config.tune
    check_tune(config, "[tune]")
    days = tune.validation_days or config.markov_best.validation_days
    first = config.start - timedelta(days=days)
    warm = int(np.searchsorted(transitions.ts, datetime_to_ts(config.start_dt)))
    history = transitions.take(np.arange(warm))
    metric = config.markov_best.metric
    pool = candidates(config)

    # One replay per distinct stack; the incumbent's carries the policy-only candidates and
    # markov-best.
    runs: list[list[Candidate]] = []
    keys: dict[str, int] = {}
    for c in pool:
        # the policies are not the stack: each candidate's arm carries its own
        key = c.config.llm.model_dump_json(exclude={"policies"})
        if key not in keys:
            keys[key] = len(runs)
            runs.append([])
        c.run = keys[key]
        runs[c.run].append(c)
    skipped = [c for c in pool if c.run is not None and c.run >= tune.max_runs]
    groups: DayGroups | None = None
    markov: np.ndarray | None = None
    markov_hr = 0.0
    run_seconds: list[float] = []

    def replay(members: list[Candidate], with_markov: bool) -> None:
        nonlocal groups, markov, markov_hr
        study = _study(config, members, first, with_markov)
        if progress:
            print(f"hybridrec: tuning, validation replay {len(run_seconds) + 1} "
                  f"({', '.join(c.label for c in members)}) on {first} to {config.start}",
                  file=sys.stderr)
        t0 = time.perf_counter()
        try:
            report, result, _ = run(study, data=(catalog, history), progress=progress, drift=False)
        except DataError as exc:
            raise DataError(f"[tune] the validation days {first} to {config.start}: {exc}") from None
        run_seconds.append(round(time.perf_counter() - t0, 2))
        costs = {a["name"]: float(a["cost"]["flops"]) for a in report["arms"]}
        if groups is None:
            groups = result.groups
        for c in members:
            c.values = per_transition(metric, result.run(c.label).all_ranks())
            c.flops = costs[c.label]
        if with_markov:
            markov = per_transition(metric, result.run("markov-best").all_ranks())
            markov_hr = next(a for a in report["arms"] if a["name"] == "markov-best")["metrics"][metric]

    for i, members in enumerate(runs[: tune.max_runs]):
        replay(members, with_markov=i == 0)
    assert groups is not None and markov is not None
    incumbent = pool[0]

    def decide(ties: bool) -> tuple[dict[str, Any], list[Candidate]]:
        """Each dimension on its own: its choice, and the changes that won."""
        choices: dict[str, Any] = {}
        winners: list[Candidate] = []
        for dimension in dict.fromkeys(c.dimension for c in pool[1:]):
            members = [c for c in pool if c.dimension == dimension]
            base = members[0] if dimension == "fine_tune" else incumbent
            options = members if dimension == "fine_tune" else [incumbent, *members]
            chosen = _choose(options, groups, config, ties=ties)
            choices[dimension] = chosen.value if chosen is not base else (
                CONFIGURED if dimension == "fine_tune" else _current(config, dimension))
            if chosen is not base and dimension != "fine_tune":
                winners.append(chosen)
        return choices, winners

    extra: list[Candidate] = []

    def joined(winners: list[Candidate], prefix: str) -> Candidate:
        """The winners' changes together, replayed when the budget allows."""
        together = config
        for c in winners:
            together = with_change(together, c.dimension, c.value)
        made = Candidate(prefix + ", ".join(c.label for c in winners), "combined",
                         [c.label for c in winners], together, run=len(runs) + len(extra))
        extra.append(made)
        if len(run_seconds) < tune.max_runs:
            replay([made], with_markov=False)
        else:
            skipped.append(made)
        return made

    # The dimensions' decisions apply together; the combination is scored and falls back to the
    # best single change only if that one beats it (paired CI above zero). Comparing the changes
    # with each other by cost instead would let the cheapest undo the others' gains.
    choices, winners = decide(ties=True)
    final = max(winners, key=lambda c: c.score()) if winners else incumbent
    combined: Candidate | None = None
    if len(winners) > 1 and tune.combine:
        combined = joined(winners, "combined: ")
        if combined.scored:
            assert combined.values is not None and final.values is not None
            _, (lo, _) = paired_bootstrap(final.values, combined.values, groups,
                                          n_boot=config.bootstrap, seed=config.seed)
            if lo <= 0:
                final = combined

    # The floor: a cheaper tie must not cost the stack its standing against counting. When the
    # choice loses to markov-best on these days (CI below zero), the best mean of each dimension
    # wins instead of the cheapest tie, and that stack replaces the choice if it scores higher.
    floor: dict[str, Any] = {"applied": False, "candidate": None}
    versus = _paired(final, markov, groups, config)
    if versus["ci95"][1] < 0:
        best_choices, best_winners = decide(ties=False)
        if [c.label for c in best_winners] != [c.label for c in winners]:
            if len(best_winners) > 1 and tune.combine:
                option = joined(best_winners, "best means: ")
            else:
                option = best_winners[0] if best_winners else incumbent
            floor["candidate"] = option.label
            if option.scored and option.score() > final.score():
                final, choices = option, best_choices
                floor["applied"] = True
                versus = _paired(final, markov, groups, config)
    chosen_config = final.config
    if choices.get("fine_tune", CONFIGURED) != CONFIGURED:
        chosen_config = with_change(chosen_config, "fine_tune", choices["fine_tune"])
    chosen_config = chosen_config.with_tuning(False)

    probe_base = next((c for c in pool if c.probe), None)

    def baseline(c: Candidate) -> Candidate | None:
        """What a candidate is paired with in the report: the incumbent, or under the probe the
        incumbent's recipe under the probe."""
        base = probe_base if c.probe else incumbent
        return None if c is base else base

    learned = [c for c in pool if c.scored and not c.probe] + [c for c in extra if c.scored]
    beats = [c.label for c in learned if _paired(c, markov, groups, config)["ci95"][0] > 0]
    note = None
    if not beats:
        best = max(learned, key=lambda c: c.score())
        note = (f"no learned candidate beats markov-best on the validation days: the best, "
                f"{best.label}, scores {best.score():.4f} {metric} against markov-best's "
                f"{float(markov_hr):.4f}")
    entry = {
        "arm": tune.arm,
        "window": [first.isoformat(), config.start.isoformat()],
        "days": days,
        "transitions": int(groups.day_of.size),
        "metric": metric,
        "seed": config.seed,
        "rule": "per dimension: the best validation mean wins, except that a cheaper candidate "
                "whose day-level paired CI against it includes zero is a tie and wins; the "
                "dimensions' choices apply together unless the best single change beats their "
                "combination (paired CI above zero); when that stack loses to markov-best "
                "(CI below zero), each dimension's best mean, if it scores higher (the floor)",
        "candidates": [_described(c, baseline(c), metric, groups, config) for c in [*pool, *extra]],
        "choices": choices,
        "chosen": final.label,
        "chosen_config": _stack_summary(chosen_config),
        "markov_best": {metric: markov_hr, "chosen_minus_markov_best": versus,
                        "beaten_by": beats},
        "floor": floor,
        "note": note,
        "not_run": [c.label for c in skipped],
        "runs": len(run_seconds),
        "run_seconds": run_seconds,
        "seconds": round(time.perf_counter() - started, 2),
    }
    return Tuning(config=chosen_config, report=entry, history=history)


def _described(c: Candidate, base: Candidate | None, metric: str, groups: DayGroups,
               config: BacktestConfig) -> dict[str, Any]:
    out: dict[str, Any] = {"label": c.label, "dimension": c.dimension, "value": c.value,
                           "run": c.run, "probe": c.probe, "scored": c.scored}
    if c.scored:
        out.update({metric: round(c.score(), 6), "flops": c.flops})
        if base is not None and base.values is not None:
            out["vs_configured"] = _paired(c, base.values, groups, config)
    return out


def _current(config: BacktestConfig, dimension: str) -> Any:
    """The incumbent's value of ``dimension``."""
    if dimension == "recent_days":
        return config.llm.evidence.recent_days or 0
    if dimension == "candidates":
        return config.llm.evidence.candidates
    policy = config.arm_plan(config.tune.arm).policy
    assert policy is not None
    return policy.options.get(dimension.removeprefix("policy."))


def _stack_summary(config: BacktestConfig) -> dict[str, Any]:
    """What a tuning decides, as the chosen study has it."""
    policy = config.arm_plan(config.tune.arm).policy
    assert policy is not None
    return {"evidence": config.llm.evidence.model_dump(mode="json"),
            "policy": policy.model_dump(mode="json"),
            "fine_tuner": config.llm.fine_tuner.model_dump(mode="json"),
            "initial_fine_tune_options": dict(config.llm.initial_fine_tune_options)}


def tuning_lines(entry: dict[str, Any]) -> list[str]:
    """The tuning as text lines (the CLI's summary and the report's section)."""
    metric = entry["metric"]
    lines = [f"tuning of arm {entry['arm']!r} on {entry['window'][0]} to {entry['window'][1]} "
             f"(exclusive, {entry['transitions']} transitions, seed {entry['seed']}):"]
    for c in entry["candidates"]:
        if not c["scored"]:
            lines.append(f"  {c['label']:<34} not run (max_runs)")
            continue
        vs = c.get("vs_configured")
        against = "" if vs is None else (f"  {vs['delta']:+.4f} [{vs['ci95'][0]:+.4f}, {vs['ci95'][1]:+.4f}]"
                                         + (" (fine-tune probe)" if c["probe"] else ""))
        lines.append(f"  {c['label']:<34} {metric} {c[metric]:.4f}  {c['flops']:.3g} flops{against}")
    mb = entry["markov_best"]
    vs = mb["chosen_minus_markov_best"]
    floor = entry.get("floor") or {}
    if floor.get("candidate"):
        lines.append(f"the cheaper ties lost to markov-best: the floor scored {floor['candidate']}"
                     + (", which scores higher and replaces them" if floor["applied"]
                        else ", which does not score higher"))
    lines.append(f"chosen: {entry['chosen']}"
                 + (f" (fine-tune recipe {entry['choices']['fine_tune']})"
                    if entry["choices"].get("fine_tune") not in (None, CONFIGURED) else "")
                 + f"; against markov-best ({mb[metric]:.4f}): {vs['delta']:+.4f} "
                 f"[{vs['ci95'][0]:+.4f}, {vs['ci95'][1]:+.4f}]")
    if entry.get("note"):
        lines.append(entry["note"])
    return lines


__all__ = [
    "COST_TIE",
    "FOLLOWERS",
    "Candidate",
    "Tuning",
    "candidates",
    "tune_stack",
    "tuning_lines",
    "with_change",
    "with_policy_options",
]
