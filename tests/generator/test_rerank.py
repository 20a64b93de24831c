"""The hf generator's rerank template: the model re-ranks the evidence's candidates."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from generator_support import tiny, tuner, window_of
from hybridrec_hf.template import RERANK_FEATURES, RerankCodec
from hybridrec_lora.evidence import daily_backoff_successors

from hybridrec.errors import ConfigError
from hybridrec.types import ClusterCatalog, EvidenceBatch, TransitionSet

M = 4


def _evidence(ctx: np.ndarray, cand: np.ndarray, pair: np.ndarray, total: float = 40.0) -> EvidenceBatch:
    """Candidates ``cand`` with pair counts ``pair`` out of ``total`` and matching shares."""
    n, m = cand.shape
    batch = dataclasses.replace(
        EvidenceBatch.empty(ctx, width=m),
        shares=np.repeat((pair / total)[..., None], 3, axis=2),
        context_support=np.full(n, total),
    )
    batch.cluster[:] = cand
    batch.support[:] = np.where(cand >= 0, pair, 0.0)
    return batch


@pytest.fixture(scope="module")
def rerank(catalog: ClusterCatalog):  # type: ignore[no-untyped-def]
    return tiny(catalog, template="rerank", evidence_items=M, tiny={"hidden_size": 32, "intermediate_size": 64})


def test_prompt_has_one_position_per_context_cluster_slot_and_cue(rerank) -> None:  # type: ignore[no-untyped-def]
    codec = rerank.codec
    assert isinstance(codec, RerankCodec)
    ctx = np.array([[0, 1], [2, 3]])
    cand = np.array([[5, 6, 7, -1], [4, 5, 6, 7]])
    enc = rerank.encode(ctx, _evidence(ctx, cand, np.array([[20.0, 10, 0, 0], [5, 4, 3, 2]])), None)
    assert enc.ids.shape == (2, 2 + M + 1, 2 + len(RERANK_FEATURES))
    np.testing.assert_array_equal(enc.ids[:, :2, 0], codec.cluster_ids[ctx])
    assert (enc.ids[:, 2 : 2 + M, 1] == codec.slot_ids[None, :]).all()
    assert enc.ids[0, 2 + 3, 0] == codec.noev_id  # the empty slot
    assert enc.ids[0, 2 + 3, 2] == codec.feature_ids[0][0]  # ... has the "no item" bucket
    assert enc.ids[0, 2, 2] != enc.ids[0, 3, 2]  # pair shares 0.5 and 0.25 fall in different buckets
    assert (enc.ids[:, -1, 0] == codec.ans_id).all()
    plain = rerank.encode(ctx, None, None)
    assert plain.ids.shape == (2, 3, 2 + len(RERANK_FEATURES))


def test_evidence_without_count_evidence_is_refused(rerank) -> None:  # type: ignore[no-untyped-def]
    ctx = np.array([[0, 1]])
    from hybridrec.errors import PluginError

    with pytest.raises(PluginError, match=r"must fill shares .* a store of your own must fill them"):
        rerank.encode(ctx, EvidenceBatch.empty(ctx, width=M), None)


def test_answer_is_the_slot_of_a_candidate_else_the_cluster(rerank) -> None:  # type: ignore[no-untyped-def]
    codec = rerank.codec
    ctx = np.array([[0, 1], [0, 1]])
    ev = _evidence(ctx, np.array([[5, 6, 7, 8], [5, 6, 7, 8]]), np.ones((2, M)))
    answers = codec.answer_ids(np.array([7, 9]), ev)
    np.testing.assert_array_equal(answers[:, 0], [codec.slot_ids[2], codec.cluster_ids[9]])
    assert (answers[:, 1] == codec.eos_id).all()


@pytest.mark.parametrize("readout", ["slots", "answer"])
def test_a_candidates_score_adds_its_slot_probability(catalog: ClusterCatalog, readout: str) -> None:
    rerank = tiny(
        catalog, template="rerank", evidence_items=M, rerank_readout=readout,
        tiny={"hidden_size": 32, "intermediate_size": 64},
    )
    assert rerank.codec.kind == ("rerank-slots" if readout == "slots" else "rerank") + "-numeric"
    ctx = np.array([[0, 1], [2, 3]])
    cand = np.array([[5, 6, 7, 8], [4, 5, -1, -1]])
    ev = _evidence(ctx, cand, np.array([[3.0, 9, 1, 0], [5, 2, 0, 0]]))
    merged = rerank.score_clusters(ctx, ev)
    logprobs = _full_logprobs(rerank, ctx, ev, slot_readout=readout == "slots")
    for i in range(2):
        for c in range(12):
            j = np.flatnonzero(cand[i] == c)
            want = logprobs[i, rerank.codec.cluster_ids[c]]
            if j.size:
                want = np.logaddexp(want, logprobs[i, rerank.codec.slot_ids[j[0]]])
            assert merged[i, c].item() == pytest.approx(want, abs=1e-5)


def _full_logprobs(gen, ctx: np.ndarray, ev: EvidenceBatch, *, slot_readout: bool) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The answer distribution computed from every position's logits: with the slot readout,
    slot ``j``'s token takes the logit of ``<|ans|>`` at slot ``j``'s position (prompt position
    ``2 + j``), ``-inf`` when the slot is empty."""
    import torch

    enc = gen.encode(ctx, ev, None)
    with torch.inference_mode():
        logits = gen.model(**gen._inputs(enc, gen.model), use_cache=False).logits.float().numpy()
    last = logits[:, -1, :].copy()
    if slot_readout:
        codec = gen.codec
        for j, slot in enumerate(codec.slot_ids):
            empty = ev.cluster[:, j] < 0
            last[:, slot] = np.where(empty, -np.inf, logits[:, 2 + j, codec.ans_id])
    return last - np.logaddexp.reduce(last, axis=1, keepdims=True)


def test_rerank_needs_single_forward(catalog: ClusterCatalog) -> None:
    with pytest.raises(ConfigError, match="single_forward"):
        tiny(catalog, template="rerank", evidence_items=M, mode="constrained")


def test_a_trained_reranker_follows_the_evidence(
    catalog: ClusterCatalog, drifting: TransitionSet, tmp_path: Path
) -> None:
    # Each context's successor changes every 3 days, so only fresh evidence predicts it: the
    # model must learn to read the candidates' counts, not memorise contexts.
    gen = tiny(catalog, template="rerank", evidence_items=M, tiny={"hidden_size": 64, "intermediate_size": 128})
    result = tuner(rag_fraction=1.0, evidence_ranking="backoff", evidence_days=3).fine_tune(
        gen, drifting, window_of(drifting), tmp_path
    )
    gen.load_adapter(result.adapter_path)
    rows = np.arange(len(drifting) - 400, len(drifting))
    ctx, truth, ts = drifting.contexts()[rows], drifting.c3[rows], drifting.ts[rows]
    ev = daily_backoff_successors(drifting, ctx, ts, days=3, m=M, alpha=128.0, weights=(0.7, 0.3, 0.0))
    top = gen.rank(ctx, ev, 1).ids[:, 0]
    hr_model = float((top == truth).mean())
    hr_evidence = float((ev.cluster[:, 0] == truth).mean())
    hr_plain = float((gen.rank(ctx, None, 1).ids[:, 0] == truth).mean())
    assert hr_model >= 0.9 * hr_evidence
    assert hr_model >= 2 * hr_plain
    # Swap the first two candidates with their counts: the choice moves with the evidence.
    chose_first = (top == ev.cluster[:, 0]) & (ev.cluster[:, 1] >= 0)
    swapped = dataclasses.replace(
        ev,
        cluster=ev.cluster[:, [1, 0, 2, 3]], support=ev.support[:, [1, 0, 2, 3]],
        score=ev.score[:, [1, 0, 2, 3]], shares=None if ev.shares is None else ev.shares[:, [1, 0, 2, 3]],
    )
    moved = gen.rank(ctx, swapped, 1).ids[:, 0]
    assert float((moved[chose_first] == ev.cluster[chose_first, 0]).mean()) >= 0.8
    # free generation names the chosen candidate's description (slot tokens are resolved)
    text = gen.generate(ctx[:5], ev.take(slice(0, 5)))
    assert all(t in {c.description for c in catalog.clusters} for t in text)


def test_numeric_evidence_sits_on_the_slots_and_separates_one_bucket(rerank) -> None:  # type: ignore[no-untyped-def]
    from hybridrec_hf.template import RERANK_NUMERIC

    ctx = np.array([[0, 1]])
    # 20 and 23 of 400 fall in the same pair-count bucket (16-31) and pair-share bucket (5-7.5%)
    ev = _evidence(ctx, np.array([[5, 6, 7, -1]]), np.array([[20.0, 23, 2, 0]]), total=400.0)
    enc = rerank.encode(ctx, ev, None)
    assert enc.features is not None and enc.features.shape == (1, 2 + M + 1, len(RERANK_NUMERIC))
    assert (enc.features[:, :2] == 0).all() and (enc.features[:, -1] == 0).all()
    assert (enc.features[0, 2 + 3] == 0).all()  # the empty slot carries no numbers
    assert (enc.ids[0, 2, 2:] == enc.ids[0, 3, 2:]).all()  # the same buckets ...
    assert enc.features[0, 3, 0] > enc.features[0, 2, 0]  # ... but the counts differ as numbers
    # log1p(count), mapped by the fixed affine map
    _, center, scale = RERANK_NUMERIC[0]
    assert enc.features[0, 2, 0] == pytest.approx((np.log1p(20.0) - center) / scale, rel=1e-5)
    plain = rerank.encode(ctx, None, None)
    assert plain.features is None


def test_a_prompt_whose_numbers_moved_is_another_prompt_for_delta_regeneration(catalog: ClusterCatalog) -> None:
    # Same tokens (the counts fall in the same buckets), other numbers: the model ranks them
    # differently, so delta regeneration (the prompt digest) must not reuse the row.
    from hybridrec.capabilities import prompt_matrix
    from hybridrec.engine.tables import digest_prompts

    gen = tiny(catalog, template="rerank", evidence_items=M, tiny={"hidden_size": 32, "intermediate_size": 64})
    ctx = np.array([[0, 1], [0, 1]])
    ev = _evidence(ctx, np.array([[5, 6, 7, -1], [5, 6, 7, -1]]),
                   np.array([[20.0, 23, 2, 0], [23.0, 20, 2, 0]]), total=400.0)
    enc = gen.encode(ctx, ev, None)
    assert (enc.ids[0] == enc.ids[1]).all()  # the tokens alone cannot tell them apart
    rows = prompt_matrix(gen, ctx, ev)
    assert not (rows[0] == rows[1]).all()
    a, b = digest_prompts(rows)
    assert not (a == b).all()
    ranked = gen.rank(ctx, ev, 3)
    assert not np.array_equal(ranked.scores[0], ranked.scores[1])
    same = prompt_matrix(gen, ctx[:1], ev.take(np.array([0])))
    assert (same[0] == rows[0]).all()


def test_the_numeric_projection_is_fixed_by_the_base_model(catalog: ClusterCatalog) -> None:
    import torch

    options = {"template": "rerank", "evidence_items": M, "tiny": {"hidden_size": 32, "intermediate_size": 64}}
    a, b = tiny(catalog, **options), tiny(catalog, **options)
    assert a._numeric_proj is not None and b._numeric_proj is not None
    torch.testing.assert_close(a._numeric_proj, b._numeric_proj)
    median = float(a.model.get_input_embeddings().weight.detach().norm(dim=1).median())
    norms = a._numeric_proj.norm(dim=1)
    torch.testing.assert_close(norms, torch.full_like(norms, 20.0 * median))
    assert tiny(catalog, **options, rerank_numeric=False)._numeric_proj is None


def test_an_adapter_of_another_rerank_form_is_refused(catalog: ClusterCatalog, tmp_path: Path) -> None:
    import json

    from hybridrec.errors import CorruptArtifactError

    adapter = tmp_path / "adapter"
    (adapter / "lora").mkdir(parents=True)
    options = {"template": "rerank", "evidence_items": M, "tiny": {"hidden_size": 32, "intermediate_size": 64}}
    gen = tiny(catalog, **options)
    (adapter / "manifest.json").write_text(json.dumps({"codec": "rerank"}))
    with pytest.raises(CorruptArtifactError, match="codec='rerank'"):
        gen.check_adapter(adapter)
    (adapter / "manifest.json").write_text(json.dumps({"codec": gen.codec.kind}))
    gen.check_adapter(adapter)
    with pytest.raises(CorruptArtifactError, match="rerank-slots-numeric"):
        tiny(catalog, **options, rerank_readout="answer").check_adapter(adapter)


def test_recent_evidence_adds_numbers_after_the_whole_windows(catalog: ClusterCatalog) -> None:
    import torch
    from hybridrec_hf.template import RERANK_NUMERIC, RERANK_NUMERIC_RECENT

    options = {"template": "rerank", "evidence_items": M, "tiny": {"hidden_size": 32, "intermediate_size": 64}}
    gen = tiny(catalog, **options, rerank_recent=True)
    assert gen.codec.kind == "rerank-slots-numeric-recent"
    ctx = np.array([[0, 1], [2, 3]])
    ev = _evidence(ctx, np.array([[5, 6, 7, -1], [4, 5, 6, 7]]), np.array([[20.0, 23, 2, 0], [9, 8, 7, 6]]))
    with pytest.raises(ValueError, match="recent_days"):
        gen.encode(ctx, ev, None)  # evidence without recent-window counts is refused
    recent = np.zeros((2, M, 5))
    recent[0, :, 0] = [0, 6, 1, 0]  # candidate 6 is what the last days chose
    recent[0, :, 1] = 7
    recent[..., 2:] = 0.1
    enc = gen.encode(ctx, dataclasses.replace(ev, recent=recent), None)
    width = len(RERANK_NUMERIC) + len(RERANK_NUMERIC_RECENT)
    assert enc.features is not None and enc.features.shape == (2, 2 + M + 1, width)
    plain = tiny(catalog, **options).encode(ctx, ev, None)
    assert plain.features is not None
    np.testing.assert_array_equal(enc.features[..., : len(RERANK_NUMERIC)], plain.features)
    recent_share = enc.features[0, 2:2 + M, len(RERANK_NUMERIC) + 1]
    _, center, scale = RERANK_NUMERIC_RECENT[1]
    np.testing.assert_allclose(recent_share[:3], (np.array([0, 6, 1]) / 7 - center) / scale, rtol=1e-5)
    assert recent_share[3] == 0  # the empty slot carries no numbers
    assert (enc.features[1, 2:2 + M, len(RERANK_NUMERIC) + 5] == pytest.approx(
        (np.log1p(0.0) - RERANK_NUMERIC_RECENT[5][1]) / RERANK_NUMERIC_RECENT[5][2]))
    # the projection's first rows are the plain form's: one seeded stream
    proj = gen._numeric_proj
    assert proj is not None and proj.shape[0] == width
    base = tiny(catalog, **options)._numeric_proj
    assert base is not None
    torch.testing.assert_close(proj[: len(RERANK_NUMERIC)], base)


def test_recent_evidence_needs_the_numeric_form(catalog: ClusterCatalog) -> None:
    with pytest.raises(ConfigError, match="rerank_numeric"):
        tiny(catalog, template="rerank", evidence_items=M, rerank_numeric=False, rerank_recent=True,
             tiny={"hidden_size": 32, "intermediate_size": 64})
