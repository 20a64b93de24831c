"""The GPU path of ``bench generator`` (single-forward ranking at fixed-length prompts, LoRA on
fixed-length batches, achieved TFLOP/s), run on CPU at a small size; and what the suite says
where there is no CUDA device."""

from __future__ import annotations

import pytest
import torch
from hybridrec_hf.bench import (
    GPU_KEYS,
    described_catalog,
    forward_flops,
    gpu_finetune_numbers,
    gpu_not_measured,
    gpu_numbers,
    gpu_rerank_numbers,
    gpu_suite,
)
from hybridrec_hf.models import TinyArch

from hybridrec.types import ClusterCatalog

SMALL = TinyArch(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64,
                 max_positions=64, attn_implementation="sdpa")


def test_gpu_numbers_code_path_on_cpu(catalog: ClusterCatalog) -> None:
    torch.set_num_threads(1)
    out = gpu_numbers(catalog, quick=True, arch=SMALL, device="cpu", prompt_tokens=32,
                      lora_batch=16, lora_steps=1, more_lora_batches=(32,))
    for key in GPU_KEYS:
        assert isinstance(out[key], float) and out[key] > 0, key
    assert out["gpu_rank_prompt_tokens"] == 32
    assert out["gpu_rank_batch_size"] == 2048  # "auto" off CUDA
    assert out["gpu_lora_batch"] == "16 x 34 tokens"
    assert out["gpu_lora_batch_32_tokens_per_s"] > 0 and out["gpu_lora_batch_32_tflops"] > 0
    assert out["gpu_lora_fused_adamw"] is False  # fused AdamW only when the parameters are on CUDA
    assert out["gpu_dtype"] == "float32"


def test_without_cuda_the_keys_say_not_measured_and_why() -> None:
    out = gpu_not_measured("no CUDA device")
    assert set(out) == set(GPU_KEYS)
    assert all(v == "not measured: no CUDA device" for v in out.values())


def test_forward_flops_counts_blocks_attention_and_kept_head_positions() -> None:
    class Config:
        hidden_size, num_hidden_layers, vocab_size = 8, 2, 100

    assert forward_flops(Config(), blocks=1000, tokens=4, kept=1) == 2 * 1000 * 4 + 4 * 2 * 16 * 8 + 2 * 8 * 100


def test_the_shipped_fine_tune_and_rerank_path_of_the_gpu_suite_runs_on_cpu() -> None:
    """``gpu_finetune_numbers`` at a small size: both fine-tunes train on the window's examples
    and the rerank table is ranked with evidence."""
    torch.set_num_threads(1)
    out = gpu_finetune_numbers(SMALL, "cpu", max_examples=300, holdout_max=50)
    for name in ("base", "lora"):
        assert out[f"gpu_finetune_{name}_examples"] == 300
        assert out[f"gpu_finetune_{name}_train_tokens"] > 300
        assert out[f"gpu_finetune_{name}_train_tokens_per_s"] > 0
    assert out["gpu_finetune_lora_batch_2048_train_tokens_per_s"] > 0
    assert out["gpu_rerank_contexts"] == 20 * 19  # every ordered pair of the synthetic catalog
    assert out["gpu_rerank_contexts_per_s"] > 0


def test_the_rerank_table_path_of_the_gpu_suite_runs_on_cpu() -> None:
    torch.set_num_threads(1)
    out = gpu_rerank_numbers(described_catalog(24), quick=True, arch=SMALL, device="cpu")
    assert out["gpu_rerank_catalog_contexts"] == 24 * 23
    assert out["gpu_rerank_catalog_contexts_per_s"] > 0


def test_the_gpu_suite_without_cuda_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = gpu_suite(quick=True)
    assert set(out) == set(GPU_KEYS)
    assert all(str(v).startswith("not measured: no CUDA device") for v in out.values())

