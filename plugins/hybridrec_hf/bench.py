"""The ``generator`` bench suite (``hybridrec bench generator --json``).

Results:

* ``tiny_rank_contexts_per_s`` / ``tiny_rank_rag_contexts_per_s`` — the ``tiny`` preset on CPU,
  single-forward mode, every context of the ML-1M catalog, without / with a top-1 evidence block
  (float32, the default; ``tiny_rank_bf16_contexts_per_s`` with ``dtype = "bfloat16"``);
* ``tiny_finetune_month_seconds`` — the first fine-tune (whole-base pre-training, default options)
  on the 30 days of ML-1M transitions before 2000-06-01, plus its held-out metrics;
* ``tiny_finetune_lora_month_seconds`` — the next month (June 2000) as a warm-start LoRA fine-tune
  with the knobs recommended for the backtest (:data:`BACKTEST_LORA`);
* ``gpu_rank_contexts_per_s``, ``gpu_generate_baseline_contexts_per_s``, ``gpu_lora_tokens_per_s``
  — a randomly initialised model of SmolLM2-135M's shape on CUDA (null, with ``gpu_note``, where
  there is no CUDA device).
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hybridrec.generation import all_contexts
from hybridrec.types import UTC, ClusterCatalog, EvidenceBatch, TimeWindow
from hybridrec_hf.generator import HFGenerator, HFOptions, answer_nll
from hybridrec_hf.models import TinyArch, quiet_transformers

#: the lora options recommended for a backtest with ~40 fine-tunes (seconds each on the tiny preset)
BACKTEST_LORA: dict[str, Any] = {"max_examples": 10000, "epochs": 1.0, "batch_size": 256}
#: SmolLM2-135M's shape (hidden 576, 30 layers, 9 heads / 3 KV heads, MLP 1536, vocab 49152)
SMOLLM2_SHAPE = TinyArch(
    hidden_size=576, num_layers=30, num_heads=9, num_kv_heads=3, intermediate_size=1536,
    vocab_size=49152, max_positions=2048, attn_implementation="sdpa",
)


def _log(message: str) -> None:
    print(f"[bench generator] {message}", file=sys.stderr, flush=True)


def _random_evidence(contexts: np.ndarray, n_clusters: int, seed: int = 0) -> EvidenceBatch:
    rng = np.random.default_rng(seed)
    evidence = EvidenceBatch.empty(contexts, width=1)
    evidence.cluster[:, 0] = (contexts[:, 1] + rng.integers(1, n_clusters - 1, len(contexts))) % n_clusters
    evidence.cluster[:, 0] = np.where(evidence.cluster[:, 0] == contexts[:, 0],
                                      (evidence.cluster[:, 0] + 1) % n_clusters, evidence.cluster[:, 0])
    evidence.support[:, 0] = rng.integers(1, 40, len(contexts))
    evidence.last_seen[:, 0] = 0
    return evidence


def rank_throughput(gen: HFGenerator, contexts: np.ndarray, evidence: EvidenceBatch | None,
                    repeats: int = 2) -> float:
    """Best-of-``repeats`` contexts per second of ``gen.rank`` (k = 10) after a warm-up."""
    warm = min(len(contexts), 2048)
    gen.rank(contexts[:warm], evidence.take(slice(0, warm)) if evidence is not None else None, 10)
    best = float("inf")
    for _ in range(repeats):
        if gen.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        gen.rank(contexts, evidence, 10)
        if gen.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return len(contexts) / best


def _finetune_numbers(catalog: ClusterCatalog, transitions: Any, quick: bool) -> dict[str, Any]:
    from hybridrec_lora import LoraFineTuner, LoraOptions

    out: dict[str, Any] = {}
    may = TimeWindow(start=datetime(2000, 5, 2, tzinfo=UTC), end=datetime(2000, 6, 1, tzinfo=UTC))
    june = TimeWindow(start=datetime(2000, 6, 1, tzinfo=UTC), end=datetime(2000, 7, 1, tzinfo=UTC))
    first = {"max_examples": 5000} if quick else {}
    with tempfile.TemporaryDirectory(prefix="hybridrec-bench-") as tmp:
        gen = HFGenerator(HFOptions(device="cpu"), catalog)
        _log(f"first fine-tune (base pre-training) on {may.start.date()}..{may.end.date()}")
        result = LoraFineTuner(LoraOptions(**first)).fine_tune(
            gen, transitions, may, Path(tmp) / "first"
        )
        out["tiny_finetune_month_seconds"] = round(result.seconds, 2)
        out["tiny_finetune_month_examples"] = result.manifest["data"]["train_examples"]
        out["tiny_finetune_month_train_tokens"] = result.train_tokens
        for key in ("hr@1", "hr@5", "hr@5_rag", "exact_match_rate"):
            out[f"tiny_finetune_month_{key}"] = round(result.metrics[key], 4)
        _log(f"warm-start LoRA on {june.start.date()}..{june.end.date()} with {BACKTEST_LORA}")
        lora = LoraFineTuner(LoraOptions(**BACKTEST_LORA)).fine_tune(
            gen, transitions, june, Path(tmp) / "second", previous_adapter=Path(tmp) / "first"
        )
        out["tiny_finetune_lora_month_seconds"] = round(lora.seconds, 2)
        out["tiny_finetune_lora_month_examples"] = lora.manifest["data"]["train_examples"]
        for key in ("hr@1", "hr@5", "hr@5_rag", "exact_match_rate"):
            out[f"tiny_finetune_lora_month_{key}"] = round(lora.metrics[key], 4)
    return out


def gpu_numbers(catalog: ClusterCatalog, quick: bool, arch: TinyArch = SMOLLM2_SHAPE,
                device: str = "cuda") -> dict[str, Any]:
    """Ranking and LoRA-training throughput of a random model of ``arch`` on ``device``."""
    from peft import LoraConfig, get_peft_model

    out: dict[str, Any] = {}
    gen = HFGenerator(HFOptions(tiny=arch, device=device, batch_size=8192), catalog)
    contexts = all_contexts(len(catalog))
    if quick:
        contexts = contexts[:16384]
    out["gpu_model_parameters"] = gen.num_parameters()
    out["gpu_rank_contexts_per_s"] = round(rank_throughput(gen, contexts, None), 1)
    out["gpu_rank_rag_contexts_per_s"] = round(
        rank_throughput(gen, contexts, _random_evidence(contexts, len(catalog))), 1
    )
    # the anchor: plain transformers generate() of the whole answer (cluster token + end), same prompts
    n = min(len(contexts), 8192)
    ids = torch.from_numpy(gen.encode(contexts[:n], None, None).ids).to(gen.device)
    with torch.inference_mode():
        gen.model.generate(input_ids=ids[:256], max_new_tokens=2, do_sample=False,
                           pad_token_id=gen.codec.pad_id)
        if gen.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for part in range(0, n, 2048):
            gen.model.generate(input_ids=ids[part : part + 2048], max_new_tokens=2,
                               do_sample=False, pad_token_id=gen.codec.pad_id)
        if gen.device.type == "cuda":
            torch.cuda.synchronize()
    baseline = n / (time.perf_counter() - started)
    out["gpu_generate_baseline_contexts_per_s"] = round(baseline, 1)
    out["gpu_rank_vs_generate"] = round(out["gpu_rank_contexts_per_s"] / baseline, 2)
    out["gpu_rank_vs_target_17000"] = round(out["gpu_rank_contexts_per_s"] / 17000.0, 2)
    # LoRA training throughput (attention projections, r = 8), RAG prompts
    model, _ = gen.model_from_adapter(None, trainable=True)
    with quiet_transformers():
        model = get_peft_model(model, LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type="CAUSAL_LM",
        ))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rng = np.random.default_rng(0)
    batch_size, steps = 512, (3 if quick else 20)
    tokens, elapsed = 0, 0.0
    for step in range(steps + 2):
        rows = rng.integers(0, len(contexts), batch_size)
        ctx = contexts[rows]
        labels = (ctx[:, 1] + 1) % len(catalog)
        labels = np.where(labels == ctx[:, 0], (labels + 1) % len(catalog), labels)
        batch = gen.training_batch(ctx, _random_evidence(ctx, len(catalog), step), None, labels)
        if gen.device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        loss = answer_nll(model, batch).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if gen.device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:  # the first steps warm up kernels and the allocator
            elapsed += time.perf_counter() - started
            tokens += int(batch["input_ids"].numel())
    out["gpu_lora_tokens_per_s"] = round(tokens / elapsed, 1)
    out["gpu_lora_vs_target_100000"] = round(out["gpu_lora_tokens_per_s"] / 100000.0, 3)
    return out


def generator_suite(quick: bool) -> dict[str, Any]:
    """Tiny-preset ranking and fine-tune cost on ML-1M; SmolLM2-shape numbers on CUDA."""
    from hybridrec.data import load_prepared

    prepared = load_prepared("ml-1m")
    catalog, transitions = prepared.catalog, prepared.transitions
    results: dict[str, Any] = {"clusters": len(catalog), "torch_threads": torch.get_num_threads()}
    gen = HFGenerator(HFOptions(device="cpu"), catalog)
    contexts = all_contexts(len(catalog))
    if quick:
        contexts = contexts[:20000]
    results["tiny_model_parameters"] = gen.num_parameters()
    _log(f"ranking {len(contexts)} contexts with the tiny preset on CPU")
    results["tiny_rank_contexts_per_s"] = round(rank_throughput(gen, contexts, None), 1)
    results["tiny_rank_rag_contexts_per_s"] = round(
        rank_throughput(gen, contexts, _random_evidence(contexts, len(catalog))), 1
    )
    # CPUs with AMX/AVX-512 bf16 run the same ranking about twice as fast in bfloat16
    bf16 = HFGenerator(HFOptions(device="cpu", dtype="bfloat16"), catalog)
    results["tiny_rank_bf16_contexts_per_s"] = round(rank_throughput(bf16, contexts, None), 1)
    results.update(_finetune_numbers(catalog, transitions, quick))
    if torch.cuda.is_available():
        _log("GPU numbers with a random model of SmolLM2-135M's shape")
        results["gpu_device"] = torch.cuda.get_device_name(0)
        results.update(gpu_numbers(catalog, quick))
    else:
        results["gpu_rank_contexts_per_s"] = None
        results["gpu_lora_tokens_per_s"] = None
        results["gpu_note"] = "no CUDA device: GPU numbers not measured"
    return results
