"""Cluster tokens on a pretrained model: new tokens initialised from the descriptions, described
prompts, single-forward ranking, lean adapters (LoRA + the new token rows only), fixed-length
prompts and the GPU batch size."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from generator_support import START, pretrained_folder, tuner, window_of
from hybridrec_hf import HFGenerator, HFOptions
from hybridrec_hf.generator import auto_batch_size
from hybridrec_hf.template import cluster_token

from hybridrec.capabilities import AddedTokens, TrainableGenerator
from hybridrec.errors import ConfigError
from hybridrec.types import ClusterCatalog, EvidenceBatch, TimeWindow, TransitionSet


@pytest.fixture(scope="module")
def tied_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pretrained_folder(tmp_path_factory.mktemp("pretrained-tied"), tied=True)


@pytest.fixture(scope="module")
def untied_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pretrained_folder(tmp_path_factory.mktemp("pretrained-untied"), tied=False)


def _gen(path: Path, catalog: ClusterCatalog, **options: Any) -> HFGenerator:
    return HFGenerator(HFOptions.model_validate(
        {"model_path": path, "template": "cluster_tokens", "num_threads": 1, **options}
    ), catalog)


def _evidence(ctx: np.ndarray) -> EvidenceBatch:
    evidence = EvidenceBatch.empty(ctx, width=2)
    evidence.cluster[:, 0] = (ctx[:, 1] + 1) % 12
    evidence.support[:, 0] = 12.0
    evidence.last_seen[:, 0] = int(START.timestamp())
    evidence.cluster[1, :] = -1  # one row without items: "Evidence: none."
    return dataclasses.replace(evidence, window=TimeWindow(start=START, end=START.replace(day=4)))


def test_text_single_forward_is_refused_and_cluster_tokens_are_added(
    catalog: ClusterCatalog, tied_path: Path
) -> None:
    with pytest.raises(ConfigError, match="cluster_tokens"):
        HFGenerator(HFOptions(model_path=tied_path), catalog)  # descriptions share first characters
    gen = _gen(tied_path, catalog)
    assert gen.codec.kind == "described_cluster_tokens"
    assert isinstance(gen, AddedTokens) and isinstance(gen, TrainableGenerator)
    vocab = gen.tokenizer.get_vocab()
    added = gen.added_token_ids()
    assert added == sorted(vocab[cluster_token(c.id)] for c in catalog.clusters)
    assert len(gen.tokenizer) == gen.model.get_input_embeddings().weight.shape[0]


@pytest.mark.parametrize("tied", [True, False])
def test_new_rows_start_from_the_mean_of_their_description_tokens(
    catalog: ClusterCatalog, tied_path: Path, untied_path: Path, tied: bool
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tied_path if tied else untied_path
    gen = _gen(path, catalog)
    base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    old_in = base.get_input_embeddings().weight.detach()
    old_out = base.get_output_embeddings().weight.detach()
    new_in = gen.model.get_input_embeddings().weight.detach()
    new_out = gen.model.get_output_embeddings().weight.detach()
    assert (new_in.data_ptr() == new_out.data_ptr()) is tied
    vocab = gen.tokenizer.get_vocab()
    for c in catalog.clusters:
        words = tokenizer(" " + c.description, add_special_tokens=False)["input_ids"]
        row = vocab[cluster_token(c.id)]
        torch.testing.assert_close(new_in[row], old_in[words].mean(0))
        torch.testing.assert_close(new_out[row], old_out[words].mean(0))
    # the pretrained rows are untouched
    torch.testing.assert_close(new_in[: old_in.shape[0]], old_in)
    torch.testing.assert_close(new_out[: old_out.shape[0]], old_out)


def test_prompts_show_descriptions_beside_their_tokens(catalog: ClusterCatalog, tied_path: Path) -> None:
    gen = _gen(tied_path, catalog, evidence_items=2)
    ctx = np.array([[0, 5], [2, 7]])
    enc = gen.encode(ctx, _evidence(ctx), None)
    texts = [  # the test tokenizer is character-level: its tokens joined are the text
        "".join(gen.tokenizer.convert_ids_to_tokens(enc.ids[i, enc.ids.shape[1] - enc.lengths[i]:].tolist()))
        for i in range(len(ctx))
    ]
    d = catalog.description
    assert texts[0] == (
        f"Recent interests: {d(0)}<|c0|>; {d(5)}<|c5|>.\n"
        f"Evidence: people then chose {d(6)}<|c6|> (seen 12 times, 3 days ago).\nNext interest:"
    )
    assert texts[1] == (
        f"Recent interests: {d(2)}<|c2|>; {d(7)}<|c7|>.\nEvidence: none.\nNext interest:"
    )
    assert gen.encode(ctx, None, None).lengths.max() < enc.lengths.min()
    # the answer is one cluster token then the tokenizer's end-of-sequence
    assert gen.codec.target_ids()[3] == [gen.tokenizer.get_vocab()["<|c3|>"], gen.tokenizer.eos_token_id]


def test_one_forward_ranks_a_batch_and_matches_unpadded_scoring(
    catalog: ClusterCatalog, tied_path: Path
) -> None:
    gen = _gen(tied_path, catalog, evidence_items=2)
    ctx = np.array([[0, 5], [2, 7], [11, 3], [4, 9]])
    evidence = _evidence(ctx)
    calls: list[int] = []
    hook = gen.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        scores = gen.score_clusters(ctx, evidence)
        ranked = gen.rank(ctx, evidence, 5)
    finally:
        hook.remove()
    assert len(calls) == 2  # one forward pass per call, whatever the prompt lengths
    ranked.validate()
    enc = gen.encode(ctx, evidence, None)
    assert enc.padded  # rows of different lengths: left padding with a mask
    tokens = torch.from_numpy(gen.codec.single_token_ids())
    with torch.inference_mode():
        for row in range(len(ctx)):
            prompt = torch.from_numpy(enc.ids[row, enc.ids.shape[1] - enc.lengths[row]:])[None]
            logp = torch.log_softmax(gen.model(prompt).logits[0, -1].float(), -1)
            torch.testing.assert_close(scores[row], logp[tokens], atol=1e-4, rtol=1e-4)
    # free generation answers with a cluster token, which reads as its description
    texts = gen.generate(ctx[:2])
    assert len(texts) == 2


def test_lean_adapter_holds_lora_and_the_new_token_rows_only(
    catalog: ClusterCatalog, planted: TransitionSet, untied_path: Path, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    gen = _gen(untied_path, catalog, evidence_items=1)
    base_in = gen.model.get_input_embeddings().weight.detach().clone()
    job = tuner(max_steps=4, batch_size=32, holdout_max=40, guardrail_samples=4, lr=5e-2)
    result = job.fine_tune(gen, planted, window_of(planted), tmp_path / "a")
    folder = result.adapter_path
    assert (folder / "lora").is_dir() and not (folder / "base").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "lora" and manifest["codec"] == "described_cluster_tokens"
    saved = load_file(str(folder / "lora" / "adapter_model.safetensors"))
    hidden = base_in.shape[1]
    n_new = len(gen.added_token_ids())
    # LoRA matrices, plus one (n_new, hidden) block per embedding matrix (input, untied output)
    token_blocks = [k for k in saved if "trainable_tokens" in k]
    assert len(token_blocks) == 2 and all(saved[k].shape == (n_new, hidden) for k in token_blocks)
    assert all("lora_" in k or "trainable_tokens" in k for k in saved)
    assert sum(v.numel() for v in saved.values()) == manifest["cost"]["trainable_parameters"]
    assert not any(v.shape[0] >= base_in.shape[0] for v in saved.values())  # no whole embedding
    # the new rows trained, the pretrained rows did not
    trained_in = gen.model.get_input_embeddings().weight.detach()
    new = torch.tensor(gen.added_token_ids())
    assert not torch.allclose(trained_in[new], base_in[new])
    torch.testing.assert_close(trained_in[: new.min()], base_in[: new.min()])
    # a fresh generator rebuilds the extended base and applies the adapter: same scores
    ctx = planted.contexts()[:16]
    again = _gen(untied_path, catalog, evidence_items=1)
    again.load_adapter(folder)
    torch.testing.assert_close(again.score_clusters(ctx), gen.score_clusters(ctx), atol=1e-5, rtol=1e-5)
    # and a warm start continues it (LoRA and token rows), still without the base weights
    second = job.fine_tune(gen, planted, window_of(planted), tmp_path / "b", previous_adapter=folder)
    assert not (second.adapter_path / "base").exists()
    assert set(load_file(str(second.adapter_path / "lora" / "adapter_model.safetensors"))) == set(saved)


def test_rerank_template_on_a_pretrained_model(
    catalog: ClusterCatalog, planted: TransitionSet, tied_path: Path, tmp_path: Path
) -> None:
    from hybridrec_lora.evidence import daily_backoff_successors

    gen = _gen(tied_path, catalog, template="rerank", evidence_items=3)
    assert gen.codec.kind == "rerank-slots-numeric"
    pad = gen.tokenizer.get_vocab()["<|pad|>"]
    assert float(gen.model.get_input_embeddings().weight.detach()[pad].abs().sum()) == 0.0  # filler adds nothing
    ctx = planted.contexts()[:8]
    evidence = daily_backoff_successors(
        planted, ctx, planted.ts[:8], days=None, m=3, alpha=128.0, weights=(0.7, 0.3, 0.0)
    )
    gen.rank(ctx, evidence, 5).validate()
    job = tuner(max_steps=2, batch_size=32, holdout_max=40, guardrail_samples=4,
                evidence_ranking="backoff", rag_fraction=1.0)
    result = job.fine_tune(gen, planted, window_of(planted), tmp_path / "rr")
    assert (result.adapter_path / "lora").is_dir() and not (result.adapter_path / "base").exists()


def test_fixed_prompt_length_pads_every_prompt(catalog: ClusterCatalog, tied_path: Path) -> None:
    gen = _gen(tied_path, catalog, evidence_items=2, prompt_length=160)
    ctx = np.array([[0, 5], [2, 7], [11, 3]])
    enc = gen.encode(ctx, _evidence(ctx), None)
    assert enc.ids.shape == (3, 160)
    batch = gen.training_batch(ctx, None, None, np.array([1, 2, 4]))
    assert batch["input_ids"].shape == (3, 162)  # prompt + cluster token + end-of-sequence
    free = _gen(tied_path, catalog, evidence_items=2)
    torch.testing.assert_close(gen.score_clusters(ctx), free.score_clusters(ctx), atol=1e-5, rtol=1e-5)
    short = _gen(tied_path, catalog, evidence_items=2, prompt_length=20)
    with pytest.raises(ValueError, match="prompt_length"):
        short.encode(ctx, None, None)


def test_auto_batch_size_follows_free_memory(catalog: ClusterCatalog, tied_path: Path) -> None:
    from transformers import LlamaConfig

    shape = LlamaConfig(vocab_size=49453, hidden_size=576, num_hidden_layers=30,
                        num_attention_heads=9, intermediate_size=1536)
    gib = 1 << 30
    sizes = [auto_batch_size(shape, prompt_tokens=32, free_bytes=f * gib) for f in (1, 8, 40, 130)]
    assert sizes == sorted(sizes) and all(s & (s - 1) == 0 for s in sizes)
    assert sizes[0] >= 256 and sizes[-1] <= 32768
    assert auto_batch_size(shape, prompt_tokens=32, free_bytes=0) == 256
    # off CUDA the automatic size is the fixed CPU default
    assert _gen(tied_path, catalog).rank_batch_size(with_evidence=False) == 2048
    assert _gen(tied_path, catalog, batch_size=7).rank_batch_size(with_evidence=False) == 7


def test_ranking_in_bfloat16_hands_fine_tuners_float32_on_cpu(catalog: ClusterCatalog, tied_path: Path) -> None:
    gen = _gen(tied_path, catalog, dtype="bfloat16")
    assert gen.model.dtype == torch.bfloat16
    model, trained = gen.model_from_adapter(None, trainable=True)
    assert model.dtype == torch.float32 and trained
    assert _gen(tied_path, catalog, dtype="bfloat16", train_dtype="bfloat16").train_dtype == torch.bfloat16
