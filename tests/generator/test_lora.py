"""The ``lora`` fine-tuner: learning, retrieval use, adapters, checkpoints, data preparation."""

from __future__ import annotations

import json
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from generator_support import START, novel, rule_a, rule_b, stream, tiny, tuner, window_of
from hybridrec_hf import HFGenerator
from hybridrec_lora import LoraFineTuner, balance_labels, trailing_top_successors
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrec.config import GuardrailConfig
from hybridrec.errors import DataError
from hybridrec.guardrails import check_guardrails
from hybridrec.interfaces import FineTuneResult
from hybridrec.plugins import registry
from hybridrec.testing import strategies as hst
from hybridrec.types import ClusterCatalog, EvidenceBatch, TimeWindow, TransitionSet

Pretrained = tuple[HFGenerator, FineTuneResult]


def hr1(gen: HFGenerator, rows: TransitionSet) -> float:
    ranked = gen.rank(rows.contexts(), None, 1)
    return float((ranked.ids[:, 0] == rows.c3).mean())


def test_registered_under_its_name() -> None:
    assert registry().get("fine_tuner", "lora") is LoraFineTuner


def test_planted_rule_lifts_heldout_hr1_from_chance(
    catalog: ClusterCatalog, planted: TransitionSet, pretrained_planted: Pretrained
) -> None:
    gen, result = pretrained_planted
    held = result.manifest["data"]["holdout_examples"]
    tail = planted.take(np.arange(len(planted) - held, len(planted)))  # the held-out tail
    assert hr1(tiny(catalog), tail) < 0.3  # untrained: about chance (1 in 10)
    assert result.metrics["hr@1"] >= 0.9
    assert hr1(gen, tail) == pytest.approx(result.metrics["hr@1"])
    assert result.metrics["exact_match_rate"] >= 0.9
    assert check_guardrails(result.metrics, GuardrailConfig()) == []


def test_manifest_records_inputs_cost_and_metrics(pretrained_planted: Pretrained) -> None:
    gen, result = pretrained_planted
    manifest = json.loads((result.adapter_path / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(result.manifest))
    assert manifest["kind"] == "full" and manifest["trained_base"] is True
    assert manifest["catalog_hash"] == gen.catalog.hash
    assert manifest["base_model_hash"] == gen.base_model_hash()
    assert manifest["window"]["start"].startswith("2000-06-01")
    assert manifest["hyperparameters"]["balance"] == "cap"
    assert manifest["cost"]["train_tokens"] == result.train_tokens > 0
    assert manifest["data"]["holdout_examples"] == 150  # 10% of the window
    assert set(manifest["metrics"]) >= {"hr@1", "hr@5", "recall", "exact_match_rate"}
    assert not (result.adapter_path / "checkpoints").exists()
    assert gen.adapter == str(result.adapter_path)


def test_adapters_round_trip(
    catalog: ClusterCatalog, planted: TransitionSet, pretrained_planted: Pretrained, tmp_path: Path
) -> None:
    gen, first = pretrained_planted
    ctx = planted.contexts()[:64]
    fresh = tiny(catalog)
    fresh.load_adapter(first.adapter_path)
    torch.testing.assert_close(fresh.score_clusters(ctx), gen.score_clusters(ctx), atol=1e-5, rtol=0)
    # a LoRA adapter on top of the trained base round-trips too (and carries that base)
    second = tuner(max_steps=3, lr=1e-2).fine_tune(
        fresh, planted, window_of(planted), tmp_path / "lora",
        previous_adapter=first.adapter_path,
    )
    assert second.manifest["kind"] == "lora" and (second.adapter_path / "base").is_dir()
    other = tiny(catalog)
    other.load_adapter(second.adapter_path)
    torch.testing.assert_close(other.score_clusters(ctx), fresh.score_clusters(ctx), atol=1e-5, rtol=0)
    unmerged = tiny(catalog, merge_adapter=False)
    unmerged.load_adapter(second.adapter_path)
    torch.testing.assert_close(unmerged.score_clusters(ctx), fresh.score_clusters(ctx), atol=1e-5, rtol=0)
    other.load_adapter(None)
    assert other.adapter is None
    assert not torch.allclose(other.score_clusters(ctx), fresh.score_clusters(ctx))


def test_frozen_model_follows_changed_evidence(
    catalog: ClusterCatalog, drifting: TransitionSet, tmp_path: Path
) -> None:
    gen = tiny(catalog)
    tuner(rag_fraction=1.0, evidence_days=3).fine_tune(gen, drifting, window_of(drifting), tmp_path)
    rng = np.random.default_rng(3)
    c1 = rng.integers(0, 12, 300)
    c2 = (c1 + rng.integers(1, 12, 300)) % 12
    ctx = np.stack([c1, c2], axis=1)
    shown = novel(c1, c2, rng.integers(0, 12, 300), 12)
    evidence = EvidenceBatch.empty(ctx, width=1)
    evidence.cluster[:, 0] = shown
    evidence.support[:, 0] = 3
    evidence.last_seen[:, 0] = int(START.timestamp())
    moved = EvidenceBatch.empty(ctx, width=1)
    moved.cluster[:, 0] = novel(c1, c2, shown + 1 + rng.integers(0, 3, 300), 12)
    moved.support[:, 0] = 3
    moved.last_seen[:, 0] = int(START.timestamp())
    as_of = np.full(300, int(START.timestamp()) + 86400)
    with_shown = gen.rank(ctx, evidence, 1, as_of=as_of).ids[:, 0]
    with_moved = gen.rank(ctx, moved, 1, as_of=as_of).ids[:, 0]
    without = gen.rank(ctx, None, 1).ids[:, 0]
    follows = float((with_shown == shown).mean())
    assert follows >= 0.4
    assert follows >= 3 * float((without == shown).mean())
    assert float((with_moved == moved.cluster[:, 0]).mean()) >= 0.4


def test_a_base_that_collapsed_onto_popularity_is_trained_again(
    catalog: ClusterCatalog, planted: TransitionSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hybridrec_lora.finetuner as lora

    # a healthy base beats popularity on its held-out tail: one attempt
    fit = tuner(rag_fraction=0.0, collapse_retries=1, max_steps=40).fine_tune(
        tiny(catalog), planted, window_of(planted), tmp_path / "fit")
    assert fit.metrics["base_attempts"] == 1.0
    assert fit.metrics["hr@5"] > fit.metrics["hr@5_popularity"]
    # popularity that no model can beat stands for a collapse: trained again, the better kept
    monkeypatch.setattr(lora, "popularity_hr", lambda train, holdout: 1.0)
    again = tuner(rag_fraction=0.0, collapse_retries=2, max_steps=3).fine_tune(
        tiny(catalog), planted, window_of(planted), tmp_path / "again")
    assert again.metrics["base_attempts"] == 3.0 and again.metrics["hr@5_popularity"] == 1.0
    # off by default, and never for a fine-tune that starts from a trained model
    plain = tuner(rag_fraction=0.0, max_steps=3).fine_tune(
        tiny(catalog), planted, window_of(planted), tmp_path / "plain")
    assert "base_attempts" not in plain.metrics


def test_popularity_hr_skips_the_context_clusters() -> None:
    from hybridrec_lora.finetuner import Examples, popularity_hr

    def examples(contexts: list[list[int]], labels: list[int]) -> Examples:
        n = len(labels)
        return Examples(np.array(contexts), np.array(labels), np.zeros(n, dtype=np.int64),
                        np.ones(n), None, np.zeros(n, dtype=bool))

    train = examples([[5, 6]] * 7, [0, 0, 0, 1, 1, 2, 3])  # popularity 0, 1, 2, 3, then 4, ...
    held = examples([[0, 1], [2, 3]], [4, 0])
    # (0, 1): its top 2 skip 0 and 1 -> [2, 3], label 4 missed; (2, 3): [0, 1], label 0 hit
    assert popularity_hr(train, held, k=2) == 0.5


def test_untrained_base_without_pretraining_is_refused(
    catalog: ClusterCatalog, planted: TransitionSet, tmp_path: Path
) -> None:
    with pytest.raises(Exception, match="untrained"):
        tuner(train_base_if_untrained=False).fine_tune(
            tiny(catalog), planted, window_of(planted), tmp_path
        )


def test_empty_window_is_a_data_error(
    catalog: ClusterCatalog, planted: TransitionSet, tmp_path: Path
) -> None:
    empty = TimeWindow(start=START - timedelta(days=60), end=START - timedelta(days=30))
    with pytest.raises(DataError, match="widen the window"):
        tuner().fine_tune(tiny(catalog), planted, empty, tmp_path)


CRASH_OPTIONS: dict[str, Any] = {"max_steps": 6, "checkpoint_every": 2, "lr": 1e-2}


def _crash_after_a_checkpoint(catalog: ClusterCatalog, planted: TransitionSet, previous: Path,
                              out: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A straight run of :data:`CRASH_OPTIONS` (returned), and one into ``out`` that is killed
    at its fifth step, after the checkpoint of step 4."""
    window = window_of(planted)
    straight = tuner(**CRASH_OPTIONS).fine_tune(
        tiny(catalog), planted, window, out.parent / f"{out.name}-straight", previous_adapter=previous)
    calls = {"n": 0}
    real_loss = HFGenerator.training_loss

    def crash_on_fifth(self: HFGenerator, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("simulated crash")
        return real_loss(self, model, batch)

    monkeypatch.setattr(HFGenerator, "training_loss", crash_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        tuner(**CRASH_OPTIONS).fine_tune(tiny(catalog), planted, window, out, previous_adapter=previous)
    monkeypatch.setattr(HFGenerator, "training_loss", real_loss)
    assert (out / "checkpoints" / "step-00000004").is_dir()
    return straight


def _same_model(catalog: ClusterCatalog, planted: TransitionSet, gen: Any, adapter: Path) -> None:
    ctx = planted.contexts()[:32]
    check = tiny(catalog)
    check.load_adapter(adapter)
    torch.testing.assert_close(gen.score_clusters(ctx), check.score_clusters(ctx), atol=1e-5, rtol=0)


@pytest.mark.parametrize("damaged", [False, True])
def test_an_interrupted_fine_tune_resumes_or_with_a_damaged_checkpoint_trains_afresh(
    damaged: bool, catalog: ClusterCatalog, planted: TransitionSet, pretrained_planted: Pretrained,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Intact: the job resumes from its checkpoint of step 4. One flipped byte: the checkpoint
    # fails its checksum, is removed with a warning, and training starts over; never stuck,
    # the same model either way.
    _, first = pretrained_planted
    straight = _crash_after_a_checkpoint(catalog, planted, first.adapter_path, tmp_path / "job",
                                         monkeypatch)
    if damaged:
        weights = tmp_path / "job" / "checkpoints" / "step-00000004" / "trainable.safetensors"
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0x01
        weights.write_bytes(bytes(data))
    gen = tiny(catalog)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        result = tuner(**CRASH_OPTIONS).fine_tune(gen, planted, window_of(planted), tmp_path / "job",
                                                  previous_adapter=first.adapter_path)
    assert result.manifest["cost"]["resumed_from_step"] == (None if damaged else 4)
    assert any("is damaged" in str(w.message) for w in seen) == damaged
    _same_model(catalog, planted, gen, straight.adapter_path)


def test_full_mode_warm_starts_every_weight_and_learns_a_new_rule(
    catalog: ClusterCatalog, pretrained_planted: Pretrained, tmp_path: Path
) -> None:
    _, first = pretrained_planted
    shifted = stream(1500, 30, lambda c1, c2, ts: rule_b(c1, c2), seed=5)
    gen = tiny(catalog)
    gen.load_adapter(first.adapter_path)
    tail = shifted.take(np.arange(len(shifted) - 150, len(shifted)))
    before = hr1(gen, tail)
    result = tuner(mode="full", epochs=3, rag_fraction=0.0).fine_tune(
        gen, shifted, window_of(shifted), tmp_path / "full", previous_adapter=first.adapter_path
    )
    manifest = result.manifest
    assert manifest["kind"] == "full" and manifest["base_source"].startswith("previous_adapter:")
    assert manifest["cost"]["trainable_parameters"] == manifest["cost"]["model_parameters"]
    assert (result.adapter_path / "base").is_dir() and not (result.adapter_path / "lora").exists()
    assert before < 0.1 and result.metrics["hr@1"] >= 0.5  # chance is 1 in 10: it learned rule b
    again = tiny(catalog)
    again.load_adapter(result.adapter_path)
    ctx = shifted.contexts()[:64]
    torch.testing.assert_close(again.score_clusters(ctx), gen.score_clusters(ctx), atol=1e-5, rtol=0)


def test_select_epoch_keeps_the_starting_model_when_training_hurts(
    catalog: ClusterCatalog, planted: TransitionSet, pretrained_planted: Pretrained, tmp_path: Path
) -> None:
    _, first = pretrained_planted
    # the training rows' labels are random, the held-out tail (the last 150 of 1,500) follows
    # rule a again: training can only raise the tail's NLL, so the starting model must be kept
    rng = np.random.default_rng(11)

    def noise_then_a(c1: np.ndarray, c2: np.ndarray, ts: np.ndarray) -> np.ndarray:
        noise = novel(c1, c2, rng.integers(0, 12, c1.shape[0]), 12)
        return np.where(np.arange(c1.shape[0]) < 1350, noise, rule_a(c1, c2))

    rows = stream(1500, 30, noise_then_a, seed=3)
    reference = tiny(catalog)
    reference.load_adapter(first.adapter_path)
    ctx = planted.contexts()[:64]
    gen = tiny(catalog)
    result = tuner(mode="full", select_epoch=True, epochs=2, lr=1e-2, rag_fraction=0.0).fine_tune(
        gen, rows, window_of(rows), tmp_path / "kept", previous_adapter=first.adapter_path
    )
    selection = result.manifest["cost"]["epoch_selection"]
    assert [h["epoch"] for h in selection["history"]] == [0.0, 1.0, 2.0]
    assert selection["nll"] == min(h["nll"] for h in selection["history"])
    assert result.metrics["selected_epoch"] == selection["epoch"]
    assert selection["epoch"] == 0.0
    assert selection["history"][1]["nll"] > selection["history"][0]["nll"]
    torch.testing.assert_close(gen.score_clusters(ctx), reference.score_clusters(ctx), atol=1e-5, rtol=0)
    # without selection the same job ends with the damaged weights
    damaged = tiny(catalog)
    tuner(mode="full", epochs=2, lr=1e-2, rag_fraction=0.0).fine_tune(
        damaged, rows, window_of(rows), tmp_path / "damaged", previous_adapter=first.adapter_path
    )
    assert not torch.allclose(damaged.score_clusters(ctx), reference.score_clusters(ctx), atol=1e-3)


def test_workload_prices_tokens(catalog: ClusterCatalog) -> None:
    gen = tiny(catalog)
    work = tuner(max_examples=1000, rag_fraction=0.5).workload(5000, gen)
    assert work.train_epochs == 5.0  # untrained tiny base: base_epochs
    assert work.train_tokens == pytest.approx(1000 * 5 * (0.5 * 3 + 0.5 * 5 + 2), rel=0.01)
    assert work.model_parameters == gen.num_parameters()


def test_a_fine_tune_is_priced_with_its_evaluation_and_guardrail_generations(catalog: ClusterCatalog) -> None:
    from hybridrec_costs.models import FlopsCostModel

    gen = tiny(catalog)
    opts = {"max_examples": 1000, "holdout_max": 200, "guardrail_samples": 64}
    work = tuner(**opts).workload(5000, gen)
    # 200 held-out examples ranked without (3 tokens) and with evidence (5 tokens).
    assert work.evaluation_tokens == 200 * (3 + 5)
    # 64 free generations: the plain prompt plus the decoded answer.
    assert work.guardrail_samples == 64
    assert work.guardrail_tokens == 64 * (3 + gen.generation_tokens())
    estimate = FlopsCostModel().estimate("fine_tune", work)
    n = gen.num_parameters()
    assert estimate.details["evaluation"] == 2 * n * work.evaluation_tokens
    assert estimate.details["guardrails"] == 2 * n * work.guardrail_tokens
    assert estimate.flops == sum(v for k, v in estimate.details.items() if k != "price_per_hour")
    more = tuner(**{**opts, "guardrail_samples": 128}).workload(5000, gen)
    assert FlopsCostModel().estimate("fine_tune", more).flops > estimate.flops


def test_epoch_selection_is_priced(catalog: ClusterCatalog) -> None:
    gen = tiny(catalog)
    opts = {"max_examples": 1000, "holdout_max": 200, "rag_fraction": 0.5}
    plain = tuner(**opts).workload(5000, gen)
    selected = tuner(**opts, select_epoch=True).workload(5000, gen)
    # untrained base: one held-out NLL pass (with and without evidence) after each of 5 epochs
    answer = gen.answer_tokens()
    assert selected.evaluation_tokens - plain.evaluation_tokens == pytest.approx(5 * 200 * (3 + 5 + 2 * answer), abs=1)


# -- data preparation ------------------------------------------------------------------------------


def test_window_sampling_spreads_the_examples_over_the_whole_window() -> None:
    rows = stream(2000, 30, lambda c1, c2, ts: rule_a(c1, c2))
    recent, _ = tuner(max_examples=100, holdout_max=50, rag_fraction=0.0, balance="none").build_examples(rows, None, 4)
    spread, _ = tuner(max_examples=100, holdout_max=50, rag_fraction=0.0, balance="none",
                      sample="window").build_examples(rows, None, 4)
    assert len(recent.labels) == len(spread.labels) == 100
    assert recent.ts.min() > rows.ts[1800]  # the newest 100 of the 1,950 training rows
    assert spread.ts.min() == rows.ts[0] and spread.ts.max() == rows.ts[1949]
    assert (np.diff(spread.ts) >= 0).all()


def test_cap_balancing_limits_popular_labels_and_keeps_the_newest() -> None:
    labels = np.array([0] * 90 + [1] * 5 + [2] * 5)
    keep, weights = balance_labels(labels, "cap", 1.0)
    kept = labels[keep]
    cap = int(np.ceil(100 / 3))
    assert (kept == 0).sum() == cap and (kept == 1).sum() == 5
    assert keep[kept == 0].min() == 90 - cap  # the most recent rows of label 0
    assert (np.diff(keep) > 0).all() and (weights == 1).all()
    _, reweighted = balance_labels(labels, "reweight", 1.0)
    assert reweighted[0] == pytest.approx(cap / 90) and reweighted[-1] == 1.0


def _naive_top(history: TransitionSet, c1: int, c2: int, as_of: int, days: float | None) -> tuple[int, int, int]:
    lo = -np.inf if days is None else as_of - days * 86400
    rows = (history.c1 == c1) & (history.c2 == c2) & (history.ts < as_of) & (history.ts >= lo)
    if not rows.any():
        return -1, 0, -1
    best = None
    for successor in np.unique(history.c3[rows]):
        hit = rows & (history.c3 == successor)
        key = (int(hit.sum()), int(history.ts[hit].max()), -int(successor))
        best = key if best is None or key > best else best
    assert best is not None
    return -best[2], best[0], best[1]


@settings(max_examples=30, deadline=None)
@given(history=hst.transition_sets(n_clusters=5, max_size=120), days=st.sampled_from([None, 20.0, 90.0]))
def test_trailing_evidence_matches_brute_force(history: TransitionSet, days: float | None) -> None:
    queries = history.contexts()[:25]
    as_of = history.ts[:25] + 1 if len(history) else np.zeros(0, dtype=np.int64)
    got = trailing_top_successors(history, queries, as_of, days=days, m=2)
    for i in range(len(queries)):
        cluster, support, seen = _naive_top(history, int(queries[i, 0]), int(queries[i, 1]), int(as_of[i]), days)
        assert (int(got.cluster[i, 0]), int(got.support[i, 0]), int(got.last_seen[i, 0])) == (
            cluster, support, seen,
        )
        assert got.last_seen[i, 0] < as_of[i]  # never the label or anything later


def test_training_evidence_never_sees_the_example_itself() -> None:
    rows = stream(500, 10, lambda c1, c2, ts: novel(c1, c2, ts // 3600, 12))
    evidence = trailing_top_successors(rows, rows.contexts(), rows.ts, days=None, m=1)
    present = evidence.cluster[:, 0] >= 0
    assert (evidence.last_seen[present, 0] < rows.ts[present]).all()


def test_trailing_evidence_is_the_same_when_computed_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import hybridrec_lora.evidence as evidence_module

    rows = stream(800, 20, lambda c1, c2, ts: novel(c1, c2, ts // 7200, 12), seed=4)
    whole = trailing_top_successors(rows, rows.contexts(), rows.ts, days=5.0, m=3)
    monkeypatch.setattr(evidence_module, "_MAX_CANDIDATES", 7)
    chunked = trailing_top_successors(rows, rows.contexts(), rows.ts, days=5.0, m=3)
    for name in ("cluster", "support", "last_seen"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(whole, name))
    assert (whole.cluster[:, 0] >= 0).mean() > 0.5


class _Planted:
    """A pickle payload: unpickling it would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_resume_never_unpickles_and_checks_checksums(tmp_path: Path) -> None:
    """A checkpoint planted in the staging folder (pickle with code, or a flipped byte) is not
    executed or loaded: resume reads tensors only (weights_only=True) and verifies sha256."""
    model = torch.nn.Linear(3, 2)
    names = [n for n, _ in model.named_parameters()]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    folder = tmp_path / "checkpoints"
    LoraFineTuner._checkpoint(folder, "fp", 4, 100, 0.5, model, names, optimizer)
    assert LoraFineTuner._resume(folder, "fp", model, names, optimizer)[0] == 4

    import hashlib

    step = folder / "step-00000004"
    marker = tmp_path / "executed"
    torch.save({"optimizer": _Planted(marker), "rng": torch.get_rng_state()}, step / "optimizer.pt")
    assert LoraFineTuner._resume(folder, "fp", model, names, optimizer)[0] == 0  # checksum differs
    assert not step.exists()  # an unusable checkpoint is removed, never in the way again

    LoraFineTuner._checkpoint(folder, "fp", 4, 100, 0.5, model, names, optimizer)
    meta = json.loads((step / "state.json").read_text())
    torch.save({"optimizer": _Planted(marker), "rng": torch.get_rng_state()}, step / "optimizer.pt")
    meta["sha256"]["optimizer.pt"] = hashlib.sha256((step / "optimizer.pt").read_bytes()).hexdigest()
    (step / "state.json").write_text(json.dumps(meta))
    assert LoraFineTuner._resume(folder, "fp", model, names, optimizer)[0] == 0  # not tensors only
    assert not marker.exists() and not step.exists()

    LoraFineTuner._checkpoint(folder, "fp", 4, 100, 0.5, model, names, optimizer)
    (step / "state.json").write_text("{garbage")
    assert LoraFineTuner._resume(folder, "fp", model, names, optimizer)[0] == 0
    assert not step.exists()


def test_a_lora_adapter_on_a_trained_base_adds_no_base_bytes(
    catalog: ClusterCatalog, planted: TransitionSet, pretrained_planted: Pretrained, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tiny preset's base is frozen after the first fine-tune: a later adapter's ``base/``
    files are hard links to its predecessor's (no new bytes), and the adapter stays
    self-contained: it loads the same after the predecessor is deleted. Where links fail
    (another file system), the files are copied."""
    import shutil

    _, first = pretrained_planted
    previous = tmp_path / "first"
    shutil.copytree(first.adapter_path, previous)
    second = tuner(max_steps=2, lr=1e-2).fine_tune(
        tiny(catalog), planted, window_of(planted), tmp_path / "second", previous_adapter=previous
    )
    files = sorted(p for p in (previous / "base").rglob("*") if p.is_file())
    assert files
    for old in files:
        new = second.adapter_path / "base" / old.relative_to(previous / "base")
        assert new.stat().st_ino == old.stat().st_ino and new.stat().st_nlink >= 2
    lora_bytes = sum(p.stat().st_size for p in (second.adapter_path / "lora").rglob("*") if p.is_file())
    base_bytes = sum(p.stat().st_size for p in files)
    assert lora_bytes < base_bytes  # what the adapter adds is its LoRA matrices
    ctx = planted.contexts()[:32]
    loaded = tiny(catalog)
    loaded.load_adapter(second.adapter_path)
    before = loaded.score_clusters(ctx)
    shutil.rmtree(previous)
    again = tiny(catalog)
    again.load_adapter(second.adapter_path)
    torch.testing.assert_close(again.score_clusters(ctx), before, atol=0, rtol=0)
    # without hard links the base is copied
    import os

    def no_links(src: str, dst: str) -> None:
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    third = tuner(max_steps=1, lr=1e-2).fine_tune(
        tiny(catalog), planted, window_of(planted), tmp_path / "third",
        previous_adapter=second.adapter_path,
    )
    for old in sorted(p for p in (second.adapter_path / "base").rglob("*") if p.is_file()):
        new = third.adapter_path / "base" / old.relative_to(second.adapter_path / "base")
        assert new.read_bytes() == old.read_bytes() and new.stat().st_ino != old.stat().st_ino
