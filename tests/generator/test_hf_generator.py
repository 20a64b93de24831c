"""The ``hf`` generator: ranking invariants, both modes, templates, free generation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from generator_support import N_CLUSTERS, START, char_tokenizer, tiny
from hybridrec_executors.local import LocalExecutor
from hybridrec_hf import HFGenerator, HFOptions
from hybridrec_hf.template import TEMPLATE_VERSION, render_text_prompt
from hypothesis import given, settings
from hypothesis import strategies as st

from hybridrec.config import PluginRef
from hybridrec.errors import ConfigError, CorruptArtifactError
from hybridrec.generation import TableJob, all_contexts
from hybridrec.plugins import registry
from hybridrec.types import ClusterCatalog, EvidenceBatch, TimeWindow


@pytest.fixture(scope="module")
def gen(catalog: ClusterCatalog) -> HFGenerator:
    return tiny(catalog)


def test_registered_under_its_name() -> None:
    assert registry().get("generator", "hf") is HFGenerator
    assert "generator" in registry().bench_suites


@settings(max_examples=25, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(st.integers(0, N_CLUSTERS - 1), st.integers(1, N_CLUSTERS - 1)),
        min_size=1, max_size=40,
    ),
    k=st.integers(1, N_CLUSTERS + 3),
)
def test_rank_never_returns_context_clusters(gen: HFGenerator, pairs: list[tuple[int, int]], k: int) -> None:
    ctx = np.array([(a, (a + d) % N_CLUSTERS) for a, d in pairs], dtype=np.int64)
    ranked = gen.rank(ctx, None, k)
    ranked.validate()
    width = min(k, N_CLUSTERS - 2)
    assert ranked.ids.shape == (len(ctx), k)
    assert (ranked.ids[:, :width] >= 0).all() and (ranked.ids[:, width:] == -1).all()
    for row, scores in zip(ranked.ids, ranked.scores, strict=True):
        assert len(set(row[:width])) == width
        assert (np.diff(scores[:width]) <= 0).all()
    again = gen.rank(ctx, None, k)
    np.testing.assert_array_equal(ranked.ids, again.ids)


def test_batches_do_not_change_results(catalog: ClusterCatalog) -> None:
    ctx = all_contexts(N_CLUSTERS)
    whole = tiny(catalog, batch_size=4096).rank(ctx, None, 5)
    rows: list[np.ndarray] = []
    job = TableJob(generator=PluginRef(plugin="hf"), catalog=catalog, contexts=ctx, k=5, batch_size=7)
    written = LocalExecutor().run(job, lambda r: rows.append(r.ids), generator=tiny(catalog, batch_size=7))
    assert written == len(ctx)
    np.testing.assert_array_equal(np.concatenate(rows), whole.ids)


def test_cluster_token_prompt_layout(gen: HFGenerator) -> None:
    ctx = np.array([[1, 2], [3, 4]])
    plain = gen.encode(ctx, None, None)
    assert plain.ids.shape == (2, 3) and not plain.padded
    evidence = EvidenceBatch.empty(ctx, width=2)
    evidence.cluster[0, 0] = 7
    evidence.support[0, 0] = 12
    evidence.last_seen[0, 0] = int(START.timestamp())
    with_ev = gen.encode(ctx, evidence, np.array([int(START.timestamp()) + 86400 * 4] * 2))
    assert with_ev.ids.shape == (2, 5)  # c1 c2 [item meta] ans: evidence_items = 1
    vocab = {v: k for k, v in gen.tokenizer.get_vocab().items()}
    assert [vocab[int(t)] for t in with_ev.ids[0]] == [
        "<|c1|>", "<|c2|>", "<|c7|>", "<|ev:exact:r2:s3|>", "<|ans|>",
    ]
    assert [vocab[int(t)] for t in with_ev.ids[1]][2:4] == ["<|noev|>", "<|noev|>"]


def test_text_prompt_renders_descriptions_and_evidence(catalog: ClusterCatalog) -> None:
    ctx = np.array([[0, 1]])
    evidence = EvidenceBatch.empty(ctx, width=1)
    evidence.cluster[0, 0] = 5
    evidence.support[0, 0] = 4
    evidence.last_seen[0, 0] = 0
    text = render_text_prompt(catalog, ctx[0], evidence, 0, np.array([2 * 86400]), 1)
    assert catalog.description(0) in text and catalog.description(1) in text
    assert f"{catalog.description(5)} (seen 4 times, 2 days ago)" in text
    assert text.endswith("Next interest:")
    assert "Evidence" not in render_text_prompt(catalog, ctx[0], None, 0, None, 1)
    assert TEMPLATE_VERSION == "1"


def test_evidence_changes_scores_only_through_the_prompt(gen: HFGenerator) -> None:
    ctx = np.array([[1, 2], [3, 4]])
    empty = EvidenceBatch.empty(ctx, width=1)
    filled = EvidenceBatch.empty(ctx, width=1)
    filled.cluster[:, 0] = 9
    a = gen.score_clusters(ctx, empty)
    b = gen.score_clusters(ctx, filled)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(gen.score_clusters(ctx, empty), a)


def test_generate_returns_one_string_per_context(gen: HFGenerator) -> None:
    out = gen.generate(np.array([[1, 2], [3, 4], [5, 6]]))
    assert len(out) == 3 and all(isinstance(t, str) for t in out)


def test_workload_counts_prompt_tokens(gen: HFGenerator) -> None:
    plain = gen.workload(100, with_evidence=False)
    rag = gen.workload(100, with_evidence=True)
    assert plain.inference_tokens == 300 and rag.inference_tokens == 500
    assert plain.evidence_tokens == 0 and rag.evidence_tokens == 200  # the evidence part of the prompt
    assert plain.model_parameters == gen.num_parameters() > 1_000_000


def test_rejects_bad_contexts(gen: HFGenerator) -> None:
    with pytest.raises(ValueError, match="must lie in"):
        gen.rank(np.array([[0, N_CLUSTERS]]))
    with pytest.raises(ValueError, match=r"\(n, k\)"):
        gen.rank(np.array([1, 2]))


def test_adapter_for_another_catalog_is_refused(gen: HFGenerator, tmp_path: Path) -> None:
    (tmp_path / "lora").mkdir()
    (tmp_path / "manifest.json").write_text(json.dumps({"catalog_hash": "0" * 64}))
    with pytest.raises(CorruptArtifactError, match="catalog_hash"):
        gen.load_adapter(tmp_path)
    with pytest.raises(CorruptArtifactError, match="neither"):
        gen.load_adapter(tmp_path.parent)


# -- a generic tokenizer: a tiny GPT-2 with a character-level tokenizer ---------------------------


def _char_model(folder: Path, catalog: ClusterCatalog) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    tok, vocab = char_tokenizer({ch for c in catalog.clusters for ch in c.description} | set(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;()\n"
    ))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(
        vocab_size=len(vocab), n_embd=32, n_layer=2, n_head=2, n_positions=512,
        bos_token_id=1, eos_token_id=1, pad_token_id=0,
    ))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_constrained_mode_with_a_character_tokenizer(catalog: ClusterCatalog, tmp_path: Path) -> None:
    path = _char_model(tmp_path / "char-gpt2", catalog)
    with pytest.raises(ConfigError, match="constrained"):
        HFGenerator(HFOptions(model_path=path), catalog)  # first characters are shared
    gen = HFGenerator(HFOptions(model_path=path, mode="constrained", constrained_batch_size=2), catalog)
    assert gen.codec.kind == "text"
    ctx = np.array([[0, 1], [2, 3], [4, 5]])
    evidence = EvidenceBatch.empty(ctx, width=1)
    evidence.cluster[1, 0] = 7  # rows get different prompt lengths: exercises left padding
    evidence = dataclasses.replace(evidence, window=TimeWindow(start=START, end=START.replace(day=20)))
    scores = gen.score_clusters(ctx, evidence)
    # brute force: teacher-force every candidate after the unpadded prompt
    enc = gen.encode(ctx, evidence, None)
    model = gen.model
    with torch.inference_mode():
        for row in range(len(ctx)):
            prompt = enc.ids[row, enc.ids.shape[1] - enc.lengths[row]:].tolist()
            for cluster, answer in enumerate(gen.codec.target_ids()):
                seq = torch.tensor([prompt + answer])
                logp = torch.log_softmax(model(seq).logits[0].float(), -1)
                want = sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(answer))
                assert float(scores[row, cluster]) == pytest.approx(want, abs=1e-4)
    ranked = gen.rank(ctx, evidence, 4)
    ranked.validate()
    assert len(gen.generate(ctx[:2])) == 2
