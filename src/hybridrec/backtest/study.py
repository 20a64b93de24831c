"""Compose a backtest from a :class:`BacktestConfig`: data, arms, replay, report.

``run_backtest(config)`` is what ``hybridrec backtest`` and ``hybridrec demo`` call.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from hybridrec.backtest.baselines import (
    COUNTING_GRID,
    CountingArm,
    MarkovArm,
    MarkovBestArm,
    PopularityArm,
    select_counting_config,
)
from hybridrec.backtest.config import LLM_ARMS, ArmPlan, ArmSpec, BacktestConfig, MarkovOptions
from hybridrec.backtest.llm import INITIAL, LLMStack, PolicyArm, WorkCache, initial_adapter
from hybridrec.backtest.metrics import pair_support_before_day
from hybridrec.backtest.protocol import Arm, Day
from hybridrec.backtest.report import build_report, drift_summary
from hybridrec.backtest.runner import ReplayResult, replay
from hybridrec.config import PluginRef
from hybridrec.engine.tables import KeepRule
from hybridrec.errors import DataError, HybridrecError
from hybridrec.kernels import kernel_settings
from hybridrec.plugins import apply_evidence, build
from hybridrec.types import ClusterCatalog, TransitionSet, datetime_to_ts, ts_to_datetime


def seed_everything(seed: int, threads: int | None = 1) -> None:
    """Seed Python, numpy and torch; make torch deterministic and (by default) single-threaded."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads is not None:
        torch.set_num_threads(threads)


SOURCE = "backtest config"


class StudyInterrupted(HybridrecError):
    """A study stopped before its last day: ``report`` is the partial report of what finished
    (its ``partial`` key says what failed where), ``result`` the partial replay and
    ``drift_plot`` as :func:`run_backtest` returns it. Raised from the original error."""

    def __init__(self, report: dict[str, Any], result: ReplayResult, drift_plot: Any) -> None:
        self.report, self.result, self.drift_plot = report, result, drift_plot
        p = report["partial"]
        super().__init__(
            f"the study stopped on {p['day'] or 'its setup'}: {p['type']} in arm {p['arm']!r} "
            f"({p['phase']}): {p['error']}; {p['completed_days']} of {p['planned_days']} test "
            "days completed"
        )


def build_stack(config: BacktestConfig, catalog: ClusterCatalog, workdir: Path,
                plan: ArmPlan | None = None) -> LLMStack:
    """Instantiate the generator, fine-tuner, store and cost model named by ``config.llm`` (or,
    with ``plan``, those of that arm: its overrides, else the shared ones)."""
    llm = config.llm

    def ref(role: str) -> PluginRef:
        own = getattr(plan, role) if plan is not None else None
        return own if own is not None else getattr(llm, role)  # type: ignore[no-any-return]

    return LLMStack(
        generator=build("generator", ref("generator"), catalog, source=SOURCE),
        fine_tuner=build("fine_tuner", ref("fine_tuner"), source=SOURCE),
        store=build("knowledge_store", ref("knowledge_store"), catalog, source=SOURCE),
        cost_model=build("cost_model", ref("cost_model"), source=SOURCE),
        guardrails=llm.guardrails,
        workdir=workdir,
        catalog=catalog,
        refs={role: ref(role) for role in ("generator", "fine_tuner")},
        table_k=llm.table_k,
        evidence_m=llm.evidence_m,
        budget=llm.budget,
        signals=llm.signals,
        training_evidence=llm.training_evidence,
        training_knowledge_days=llm.training_knowledge_days,
        regenerate=llm.regenerate,
        keep=KeepRule(tolerance=llm.regenerate_tolerance, max_age_days=llm.max_row_age_days),
    )


def build_arms(
    config: BacktestConfig,
    transitions: TransitionSet,
    cache: WorkCache | None,
    stacks: dict[str, WorkCache] | None = None,
) -> list[Arm]:
    """One :class:`Arm` per arm of ``config.arms``, in that order (see
    :meth:`BacktestConfig.arm_plan`). LLM arms work through ``cache``, or, for an arm with a
    stack of its own, through ``stacks[plan.stack_key()]``. Each LLM arm's state carries the
    signals its policy needs (every signal for the arms in ``llm.drift_arms``); a per-arm
    ``cost_model`` prices and records that arm's actions."""
    from hybridrec.engine.state import needed_signals
    from hybridrec.types import SIGNALS

    arms: list[Arm] = []
    for plan in config.arm_plans():
        name, options = plan.name, plan.counting
        if plan.preset in ("markov-all", "markov-recent") and isinstance(options, MarkovOptions):
            arms.append(MarkovArm(name, transitions, window_days=options.window_days,
                                  tie_break=options.tie_break))
        elif plan.preset == "markov-backoff" and options is not None:
            arms.append(CountingArm(name, transitions, options.counting_config()))  # type: ignore[attr-defined]
        elif plan.preset == "markov-best" and options is not None:
            arms.append(MarkovBestArm(name, transitions,
                                      validation_days=options.validation_days,  # type: ignore[attr-defined]
                                      metric=options.metric))  # type: ignore[attr-defined]
        elif plan.preset == "popularity" and options is not None:
            arms.append(PopularityArm(name, transitions))
        else:
            assert plan.policy is not None
            arm_cache = (stacks or {}).get(plan.stack_key()) if plan.own_stack else cache
            if arm_cache is None:
                raise ValueError(f"LLM arm {name!r} needs a work cache")
            policy = build("update_policy", plan.policy, source=SOURCE)
            cost_model = (build("cost_model", plan.cost_model, source=SOURCE)
                          if "cost_model" in plan.overrides and plan.cost_model is not None else None)
            also = SIGNALS if name in config.llm.drift_arms else ()
            arms.append(PolicyArm(
                name, policy, arm_cache,
                measure_rag_agreement=config.llm.measure_rag_agreement,
                signals=needed_signals(policy, f"arm {name!r}", also),
                cost_model=cost_model,
                budget=plan.budget,
                config={**plan.describe(),
                        "pipeline": config.arm_pipeline(name).model_dump(mode="json")},
            ))
        arms[-1].preset = plan.preset
    return arms


def load_data(config: BacktestConfig) -> tuple[ClusterCatalog, TransitionSet]:
    """The catalog and transitions of ``config.dataset`` through :mod:`hybridrec.data`."""
    from hybridrec.data import load_prepared

    prepared = load_prepared(
        config.dataset,
        options=config.dataset_options or None,
        min_rating=config.min_rating,
        clustering=config.clustering,
        n_clusters=config.n_clusters,
    )
    return prepared.catalog, prepared.transitions


def _option_fields(role: str, plugin: str) -> dict[str, Any]:
    """The option fields of a registered plugin ({} when it is unknown or has no options)."""
    from hybridrec.plugins import registry

    try:
        cls = registry().get(role, plugin)
    except Exception:  # an unknown plugin is reported where it is instantiated
        return {}
    return dict(getattr(getattr(cls, "Options", None), "model_fields", {}))


def _seeded(ref: PluginRef, role: str, seed: int, offset: int) -> PluginRef:
    """``ref`` with its ``seed`` option set to the training seed, if its plugin has one: ``seed``,
    or an explicitly configured option seed plus ``offset``."""
    from hybridrec.plugins import registry

    try:
        cls = registry().get(role, ref.plugin)
    except Exception:  # an unknown plugin is reported where it is instantiated
        return ref
    fields = getattr(getattr(cls, "Options", None), "model_fields", {})
    if "seed" not in fields:
        return ref
    explicit = ref.options.get("seed")
    value = seed if explicit is None else int(explicit) + offset
    return PluginRef(plugin=ref.plugin, options={**ref.options, "seed": value})


def with_training_seed(config: BacktestConfig, seed: int, offset: int = 0) -> BacktestConfig:
    """``config`` for one training seed: ``seed`` (torch, numpy via :func:`seed_everything`) and
    the generator's and fine-tuner's ``seed`` options where they have one (the shared ones and
    every arm's own)."""
    llm = config.llm
    if not config.llm_arms():
        return config.model_copy(update={"seed": seed})
    llm = llm.model_copy(update={
        "generator": _seeded(llm.generator, "generator", seed, offset),
        "fine_tuner": _seeded(llm.fine_tuner, "fine_tuner", seed, offset),
    })
    arms = {name: _spec_update(spec, {
        role: _seeded(ref, role, seed, offset)
        for role in ("generator", "fine_tuner") if (ref := getattr(spec, role)) is not None
    }) for name, spec in config.arms.items()}
    return config.model_copy(update={"seed": seed, "llm": llm, "arms": arms})


def _spec_update(spec: ArmSpec, update: dict[str, Any]) -> ArmSpec:
    return spec.model_copy(update=update) if update else spec


def with_validated_candidates(
    config: BacktestConfig, history: TransitionSet
) -> tuple[BacktestConfig, dict[str, Any] | None]:
    """``config`` with the backoff estimator behind the LLM arms' candidates chosen on the
    validation days (see ``llm.candidate_estimator``), and what was chosen; unchanged (and
    ``None``) when the store does not rank by the backoff estimator or the option is off.

    The grid is :data:`COUNTING_GRID`'s backoff configurations, decayed ones included: the
    same choices ``markov-best`` makes among them, so where it chooses the backoff estimator the
    candidates are its ranking as of each refresh. A decayed choice sets the recipe's
    ``half_life_days`` (the store decays each snapshot to its end, the fine-tuner each example's
    evidence to its day). When the chosen one counts a trailing window, that window becomes the
    LLM policies' ``knowledge_days`` (where their options have it) and the fine-tuner's
    ``evidence_days``, so serving and training evidence count the same days. Only rows of
    ``history`` before the start are read.
    """
    llm = config.llm

    def backoff(ref: PluginRef | None) -> bool:
        return ref is not None and ref.options.get("granularity") == "backoff"

    shared = backoff(llm.knowledge_store)
    plans = [p for p in config.arm_plans() if p.llm]
    if llm.candidate_estimator != "validation" or not (
            shared or any(p.own_stack and backoff(p.knowledge_store) for p in plans)):
        return config, None
    grid = [c for c in COUNTING_GRID if c.kind == "backoff"]
    selection = select_counting_config(
        history, config.start_dt, validation_days=config.markov_best.validation_days, grid=grid,
        metric=config.markov_best.metric,
    )
    chosen = selection.chosen
    alpha, weights = float(chosen.alpha), tuple(float(w) for w in chosen.weights)
    window = chosen.window_days

    # The choice goes into the evidence recipe, which fills the stores', the fine-tuners' and
    # the policies' options (and a deployed arm's pipeline) with the same values.
    recipe = llm.evidence.model_copy(update={
        "alpha": alpha, "weights": weights, "half_life_days": chosen.half_life_days,
        **({} if window is None else {"history_days": float(window)})})
    llm = llm.with_evidence(recipe) if shared else llm.model_copy(update={"evidence": recipe})

    def chosen_for(role: str, ref: PluginRef) -> PluginRef:
        return apply_evidence(recipe, role, ref, strict=False)

    arms = dict(config.arms)
    for plan in plans:
        assert plan.policy is not None and plan.knowledge_store is not None
        assert plan.fine_tuner is not None
        spec = arms[plan.name]
        if plan.own_stack and backoff(plan.knowledge_store):
            # an arm with a stack of its own gets the choice in its own tables
            arms[plan.name] = _spec_update(spec, {
                "knowledge_store": chosen_for("knowledge_store", plan.knowledge_store),
                "fine_tuner": chosen_for("fine_tuner", plan.fine_tuner),
                "policy": chosen_for("update_policy", plan.policy)})
        elif shared and not plan.own_stack:
            # on the shared stack: its tables name the shared plugins or nothing (no override)
            update: dict[str, Any] = {r: None for r in ("generator", "fine_tuner", "knowledge_store")
                                      if getattr(spec, r) is not None}
            if spec.policy is not None:
                update["policy"] = chosen_for("update_policy", spec.policy)
            arms[plan.name] = _spec_update(spec, update)
    report = {**selection.as_dict(), "arm": "LLM arms' candidates (knowledge store and training evidence)"}
    report["top"] = report["top"][:3]
    return config.model_copy(update={"llm": llm, "arms": arms}), report


def _replay_once(
    config: BacktestConfig,
    catalog: ClusterCatalog,
    transitions: TransitionSet,
    warm: int,
    *,
    progress: bool,
    workdir: Path | None,
) -> tuple[ReplayResult, dict[str, Any]]:
    """One replay of ``config.arms`` with ``config.seed`` (its candidates' estimator already chosen:
    :func:`run_backtest` does it once for every seed); returns the result and its setup."""
    seed_everything(config.seed, config.threads)
    start, end = config.start_dt, config.end_dt
    setup: dict[str, Any] = {"arms": list(config.arms), "seed": config.seed}
    with ExitStack() as stack:
        cache: WorkCache | None = None
        stacks: dict[str, WorkCache] = {}
        llm_names = config.llm_arms()
        if llm_names:
            if workdir is None:
                workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hybridrec-backtest-")))
            history = transitions.take(np.arange(warm))
            plans = [config.arm_plan(name) for name in llm_names]
            if any(not p.own_stack for p in plans):
                cache, setup["initial_adapter"] = _prepared_cache(
                    config, catalog, transitions, history, Path(workdir), None, progress)
            own: dict[str, list[ArmPlan]] = {}
            for plan in plans:
                if plan.own_stack:
                    own.setdefault(plan.stack_key(), []).append(plan)
            if own:
                setup["stacks"] = []
            for i, (key, members) in enumerate(own.items()):
                stacks[key], initial = _prepared_cache(
                    config, catalog, transitions, history, Path(workdir) / "stacks" / str(i),
                    members[0], progress)
                setup["stacks"].append({"arms": [p.name for p in members],
                                        **{r: getattr(members[0], r).model_dump(mode="json")
                                           for r in ("generator", "fine_tuner", "knowledge_store")},
                                        "initial_adapter": initial})
            if cache is None:  # every LLM arm has a stack of its own: the first stands in
                cache = next(iter(stacks.values()))
                setup["initial_adapter"] = setup["stacks"][0]["initial_adapter"]
        arms = build_arms(config, transitions, cache, stacks)

        def on_day(day: Day) -> None:
            live: dict[int, set[tuple[str, str | None]]] = {}
            for arm in arms:
                if isinstance(arm, PolicyArm):
                    live.setdefault(id(arm.cache), set()).update(arm.live_states())
            for each in {id(c): c for c in [cache, *stacks.values()] if c is not None}.values():
                each.retain(live.get(id(each), set()))

        result = replay(transitions, arms, start, end, k=config.k, progress=progress, on_day=on_day,
                        keep_partial=True)
        for arm in arms:
            if isinstance(arm, MarkovBestArm) and arm.selection is not None:
                setup["validation"] = arm.selection.as_dict()
        for item, each in zip(setup.get("stacks", []), stacks.values(), strict=True):
            item.update({"executed_fine_tunes": each.executed["fine_tune"],
                         "executed_refreshes": each.executed["refresh_knowledge"],
                         "ranked_contexts": each.ranked_contexts})
        if cache is not None:
            for arm in arms:
                if isinstance(arm, PolicyArm):
                    arm.finalize_seconds(arm.cache.seconds_per_context())
            setup["llm"] = {
                "generator": config.llm.generator.model_dump(),
                "fine_tuner": config.llm.fine_tuner.model_dump(),
                "initial_fine_tune_options": config.llm.initial_fine_tune_options,
                "knowledge_store": config.llm.knowledge_store.model_dump(),
                "cost_model": config.llm.cost_model.model_dump(),
                "policies": {a: config.arm_plan(a).policy.model_dump()  # type: ignore[union-attr]
                             for a in llm_names},
                "guardrails": config.llm.guardrails.model_dump(),
                "table_k": config.llm.table_k,
                "executed_fine_tunes": cache.executed["fine_tune"],
                "executed_refreshes": cache.executed["refresh_knowledge"],
                "charged_fine_tunes": sum(a.cost.fine_tunes for a in arms if a.llm),
                "ranked_contexts": cache.ranked_contexts,
                "rank_seconds": round(cache.rank_seconds, 2),
                "seconds_per_ranked_context": cache.seconds_per_context(),
                "lazy_tables": (
                    "table rows are materialised only for the contexts scored, stored per adapter "
                    "keyed by the rendered prompt and reused by every state with the same prompt; "
                    "a full regeneration is charged for every catalog context, a delta "
                    "regeneration for the contexts it ranks (the engine's delta planner)"
                ),
                "regenerate": config.llm.regenerate,
                "regenerate_tolerance": config.llm.regenerate_tolerance,
                "max_row_age_days": config.llm.max_row_age_days,
                "reused_rows": cache.reused_rows,
                "full_regeneration_flops": cache.regenerate_estimate(
                    cache.n * (cache.n - 1), with_evidence=True).flops,
                "fine_tune_flops": _mean_fine_tune_flops(arms, cache, transitions, end),
                "initial_adapter": INITIAL,
            }
    return result, setup


def _prepared_cache(
    config: BacktestConfig, catalog: ClusterCatalog, transitions: TransitionSet,
    history: TransitionSet, workdir: Path, plan: ArmPlan | None, progress: bool,
) -> tuple[WorkCache, dict[str, Any]]:
    """A work cache over the shared stack (``plan`` None) or an arm's own stack, with its
    initial adapter trained on the history before the start (all of it, or ``warmup_days``;
    setup, charged to no arm); and the report's
    description of that adapter."""
    llm = config.llm
    stack_ = build_stack(config, catalog, workdir, plan)
    cache = WorkCache(stack_, transitions)
    tuner = plan.fine_tuner if plan is not None and plan.fine_tuner is not None else llm.fine_tuner
    t0 = time.perf_counter()
    initial_ref = llm.initial_fine_tune().fine_tuner(tuner)
    initial_tuner = build("fine_tuner", initial_ref, source=SOURCE)
    if progress:
        whose = "shared" if plan is None else f"arm {plan.name!r}'s own"
        span = "all history" if llm.warmup_days is None else f"the {llm.warmup_days} days"
        print(f"hybridrec: fine-tuning the {whose} initial adapter on {span} "
              f"before {config.start} (seed {config.seed})", file=sys.stderr)
    entry = initial_adapter(cache, history, config.start_dt, llm.warmup_days, initial_tuner,
                            fine_tuner_ref=initial_ref, progress=progress)
    described = {
        "window": [entry.window.start.isoformat(), entry.window.end.isoformat()] if entry.window else None,
        "metrics": entry.metrics,
        "held_by_guardrails": entry.held_reasons,
        "seconds": round(time.perf_counter() - t0, 2),
        "flops": entry.estimate.flops,
        "note": ("shared by every LLM arm on the shared stack" if plan is None else
                 "shared by the arms on this stack") + "; its cost is setup, charged to no arm",
    }
    return cache, described


def _mean_fine_tune_flops(arms: list[Arm], cache: WorkCache, transitions: TransitionSet,
                          end: Any) -> float:
    """The mean price of the fine-tunes the arms were charged, or (none ran) of one on the last
    :data:`~hybridrec.engine.pricing.PRICE_DAYS` of the test days."""
    from hybridrec.engine.pricing import PRICE_DAYS
    from hybridrec.types import TimeWindow

    count = sum(a.cost.fine_tunes for a in arms if a.llm)
    if count:
        return float(sum(a.cost.by_action.get("fine_tune", 0.0) for a in arms if a.llm) / count)
    recent = transitions.window(TimeWindow.ending_at(end, PRICE_DAYS))
    return float(cache.fine_tune_estimate(len(recent)).flops)


def scored_pair_support(transitions: TransitionSet, result: ReplayResult) -> np.ndarray:
    """Per scored transition (in replay order): earlier transitions of its exact pair before
    its day."""
    rows = np.concatenate([np.arange(d.lo, d.hi) for d in result.days]) if result.days else np.zeros(0, np.int64)
    starts = np.repeat([datetime_to_ts(d.start) for d in result.days], [d.n for d in result.days])
    return pair_support_before_day(transitions.c1, transitions.c2, transitions.ts,
                                   transitions.n_clusters, rows.astype(np.int64),
                                   np.asarray(starts, dtype=np.int64))


def run_backtest(
    config: BacktestConfig,
    *,
    data: tuple[ClusterCatalog, TransitionSet] | None = None,
    progress: bool = False,
    drift: bool = True,
) -> tuple[dict[str, Any], ReplayResult, Any]:
    """Run the study; returns ``(report, replay_result, drift_plotter_or_None)``.

    ``data`` overrides loading ``config.dataset`` (``(catalog, transitions)``). With
    ``config.seeds > 1`` the LLM arms are replayed once more per further training seed
    (``seed + 1``, ...; counting arms run once) and the report aggregates the seeds;
    ``replay_result`` is the first seed's.
    """
    started = time.perf_counter()
    seed_everything(config.seed, config.threads)
    catalog, transitions = data if data is not None else load_data(config)
    if len(transitions) == 0:
        raise DataError(f"data set {config.dataset!r} has no transitions")
    start = config.start_dt
    warm = int(np.searchsorted(transitions.ts, datetime_to_ts(start)))
    first_day = ts_to_datetime(int(transitions.ts[0])).date().isoformat()
    last_day = ts_to_datetime(int(transitions.ts[-1])).date().isoformat()
    span = f"the data runs from {first_day} to {last_day}"
    if warm == 0:
        raise DataError(
            f"no transitions before the test start {config.start}: the warm-up needs data; "
            f"move --start later ({span})"
        )
    if int(np.searchsorted(transitions.ts, datetime_to_ts(config.end_dt))) == warm:
        raise DataError(f"no transitions in the test window {config.start} to {config.end} "
                        f"(exclusive): {span}")
    validation_start = start - timedelta(days=config.markov_best.validation_days)
    if int(np.searchsorted(transitions.ts, datetime_to_ts(validation_start))) == warm:
        raise DataError(
            f"no transitions in the {config.markov_best.validation_days} validation days before "
            f"the test start {config.start} (every tunable is chosen there): {span}")
    tuning: dict[str, Any] | None = None
    if config.tune.enabled and config.llm_arms():
        # the LLM stack chosen on the validation days before the start (backtest.tune)
        from hybridrec.backtest.tune import tune_stack

        tuned = tune_stack(config, catalog, transitions, run=run_backtest, progress=progress)
        config, tuning = tuned.config, tuned.report
    candidate_estimator: dict[str, Any] | None = None
    if config.llm_arms():
        # the candidates' estimator chosen on the validation days, once for every training seed
        config, candidate_estimator = with_validated_candidates(config, transitions.take(np.arange(warm)))
        if tuning is not None:  # the evidence the test days run with
            tuning["chosen_config"]["evidence"] = config.llm.evidence.model_dump(mode="json")
    seeds = config.seed_list()
    llm_names = config.llm_arms()

    def workdir_of(seed: int) -> Path | None:
        # One folder per seed when there are several (adapters of different seeds never mix).
        if config.workdir is None or len(seeds) == 1 or not llm_names:
            return config.workdir
        return config.workdir / f"seed-{seed}"

    result, setup = _replay_once(with_training_seed(config, seeds[0]), catalog, transitions, warm,
                                 progress=progress, workdir=workdir_of(seeds[0]))
    if candidate_estimator is not None:
        setup["candidate_estimator"] = candidate_estimator
    failure = dict(result.failure) if result.failure else None
    validation = setup.pop("validation", None)
    extra_seeds: list[tuple[int, ReplayResult]] = []
    if llm_names and len(seeds) > 1 and failure is None:
        setup["per_seed"] = []
        for offset, seed in enumerate(seeds[1:], start=1):
            if progress:
                print(f"hybridrec: training seed {seed} ({offset + 1} of {len(seeds)}): "
                      f"replaying the LLM arms {', '.join(llm_names)}", file=sys.stderr)
            seeded = with_training_seed(config, seed, offset).with_arms(llm_names)
            res, seed_setup = _replay_once(seeded, catalog, transitions, warm, progress=progress,
                                           workdir=workdir_of(seed))
            if res.failure is not None:  # the report keeps the seeds that finished
                failure = {**res.failure, "seed": seed}
                break
            extra_seeds.append((seed, res))
            setup["per_seed"].append({"seed": seed,
                                      "initial_adapter": seed_setup.get("initial_adapter"),
                                      "llm": {k: seed_setup.get("llm", {}).get(k) for k in
                                              ("generator", "fine_tuner", "executed_fine_tunes",
                                               "ranked_contexts", "rank_seconds")}})
    setup["seeds"] = seeds if llm_names else seeds[:1]
    dataset = {
        "name": config.dataset,
        "clusters": catalog.size,
        "k": 2,
        "test_start": config.start.isoformat(),
        "test_end": config.end.isoformat(),
        "transitions": len(transitions),
        "min_rating": config.min_rating,
        "clustering": config.clustering,
    }
    setup["wall_seconds"] = round(time.perf_counter() - started, 2)
    setup["machine"] = kernel_settings()
    extra: dict[str, Any] = {"setup": setup,
                             "claims": [c.model_dump(mode="json") for c in config.claims]}
    if validation is not None:
        extra["validation"] = validation
    if tuning is not None:
        extra["tuning"] = tuning
    report = build_report(
        result, dataset=dataset, reference=config.reference_arm(), seed=config.seed,
        n_boot=config.bootstrap, extra=extra, extra_seeds=extra_seeds,
        pair_support=scored_pair_support(transitions, result),
    )
    llm_setup = setup.get("llm") or {}
    if llm_setup.get("full_regeneration_flops"):
        from hybridrec.backtest.report import break_even

        report["break_even"] = break_even(
            report["arms"], full_regeneration_flops=llm_setup["full_regeneration_flops"],
            fine_tune_flops=llm_setup["fine_tune_flops"])
    if failure is not None:
        failure.setdefault("seed", seeds[0])
        report["partial"] = {
            **failure,
            "note": "the study stopped early: the report holds the test days every arm completed "
                    "(and, with several training seeds, the seeds that completed); an arm's cost "
                    "also counts actions it took on the day that failed",
        }
    drift_plotter = None
    if drift:
        from hybridrec.data.drift import drift_report, plot_drift

        measured = drift_report(transitions, dataset=config.dataset, seed=config.seed,
                                min_rating=config.min_rating)
        report["drift"] = drift_summary(measured)

        def drift_plotter(path: Path) -> Path:
            return plot_drift(measured, path)

    if failure is not None:
        raise StudyInterrupted(report, result, drift_plotter)
    return report, result, drift_plotter


__all__ = [
    "LLM_ARMS", "StudyInterrupted", "build_arms", "build_stack", "load_data", "run_backtest", "scored_pair_support",
    "seed_everything", "with_training_seed",
]
