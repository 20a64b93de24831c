"""The ``generator`` bench suite (``hybridrec bench generator --json``).

Results:

* ``tiny_rank_contexts_per_s`` / ``tiny_rank_rag_contexts_per_s`` — the ``tiny`` preset on CPU,
  single-forward mode, every context of the ML-1M catalog, without / with a top-1 evidence block
  (float32, the default; ``tiny_rank_bf16_contexts_per_s`` with ``dtype = "bfloat16"``);
* ``tiny_finetune_month_seconds`` — the first fine-tune (whole-base pre-training, default options)
  on the 30 days of ML-1M transitions before 2000-06-01, plus its held-out metrics;
* ``tiny_finetune_lora_month_seconds`` — the next month (June 2000) as a warm-start LoRA fine-tune
  with the knobs recommended for the backtest (:data:`BACKTEST_LORA`);
* ``gpu_rank_contexts_per_s`` (32-token prompts), ``gpu_rank_tflops``, ``gpu_lora_tokens_per_s``,
  ``gpu_lora_tflops`` (and ``gpu_generate_baseline_contexts_per_s``, the batch sizes, ...) — a
  randomly initialised model of SmolLM2-135M's shape on CUDA in bfloat16 (:func:`gpu_numbers`);
  without a CUDA device each of the four keys is the string ``"not measured: <reason>"``.

The ``gpu`` suite (``hybridrec bench gpu --json``) runs the GPU part alone and needs no data set
(so it runs on a machine that has only the package): :func:`gpu_numbers` on a catalog of ML-1M's
size, LoRA throughput at a second batch size, the bf16 matmul peak the TFLOP/s compare with, and
the shipped fine-tuner and ranking of the demo's ``rerank`` generator, at SmolLM2-135M's shape,
end to end on the ``synthetic`` data set (:func:`gpu_suite`).
"""

from __future__ import annotations

import dataclasses
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


def _random_evidence(contexts: np.ndarray, n_clusters: int, seed: int = 0, width: int = 1) -> EvidenceBatch:
    rng = np.random.default_rng(seed)
    evidence = EvidenceBatch.empty(contexts, width=width)
    for j in range(width):
        cluster = (contexts[:, 1] + rng.integers(1, n_clusters - 1, len(contexts))) % n_clusters
        evidence.cluster[:, j] = np.where(cluster == contexts[:, 0], (cluster + 1) % n_clusters, cluster)
        evidence.support[:, j] = rng.integers(1, 40, len(contexts))
        evidence.last_seen[:, j] = 0
    return evidence


def _random_count_evidence(contexts: np.ndarray, n_clusters: int, width: int, seed: int = 0) -> EvidenceBatch:
    """:func:`_random_evidence` with the count evidence the ``rerank`` template reads (shares
    and the context's support), for throughput measurements."""
    rng = np.random.default_rng(seed)
    base = _random_evidence(contexts, n_clusters, seed, width)
    return dataclasses.replace(
        base, shares=rng.uniform(0.001, 0.3, (len(contexts), width, 3)),
        context_support=base.support.sum(axis=1) + rng.integers(0, 40, len(contexts)),
    )


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
    # Quick mode (run by the test suite) checks every code path on a few examples.
    first = {"max_examples": 1000, "base_epochs": 1.0, "holdout_max": 100} if quick else {}
    second = {**BACKTEST_LORA, **({"max_examples": 1000, "holdout_max": 100} if quick else {})}
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
        _log(f"warm-start LoRA on {june.start.date()}..{june.end.date()} with {second}")
        lora = LoraFineTuner(LoraOptions(**second)).fine_tune(
            gen, transitions, june, Path(tmp) / "second", previous_adapter=Path(tmp) / "first"
        )
        out["tiny_finetune_lora_month_seconds"] = round(lora.seconds, 2)
        out["tiny_finetune_lora_month_examples"] = lora.manifest["data"]["train_examples"]
        for key in ("hr@1", "hr@5", "hr@5_rag", "exact_match_rate"):
            out[f"tiny_finetune_lora_month_{key}"] = round(lora.metrics[key], 4)
    return out


def _block_parameters(model: Any) -> int:
    """Parameters outside the token embeddings and the output head (what every token pays)."""
    skip = {id(model.get_input_embeddings().weight)}
    head = model.get_output_embeddings()
    if head is not None:
        skip.add(id(head.weight))
    return int(sum(p.numel() for p in model.parameters() if id(p) not in skip))


def forward_flops(config: Any, blocks: int, tokens: int, kept: int) -> float:
    """FLOPs of one forward pass over a ``tokens``-long prompt, ``kept`` positions through the
    output head: ``2 * blocks * tokens`` (a multiply-add is 2 FLOPs), attention's two ``L x L``
    products counted in full (``4 * layers * L^2 * hidden``, not halved for causality), and
    ``2 * hidden * vocab`` per kept position."""
    hidden = int(config.hidden_size)
    return float(2 * blocks * tokens + 4 * int(config.num_hidden_layers) * tokens * tokens * hidden
                 + 2 * kept * hidden * int(config.vocab_size))


def gpu_numbers(
    catalog: ClusterCatalog,
    quick: bool,
    arch: TinyArch = SMOLLM2_SHAPE,
    device: str = "cuda",
    *,
    prompt_tokens: int = 32,
    lora_batch: int = 512,
    lora_steps: int | None = None,
    more_lora_batches: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Ranking and LoRA-training throughput of a random model of ``arch`` on ``device``, as the
    ``hf`` generator runs them there: bfloat16 on CUDA, ``prompt_tokens``-long prompts (the
    cluster-token form with evidence items, left-padded to exactly that length), single-forward
    ranking in batches sized from free memory (``batch_size = "auto"``); LoRA (attention, r 8)
    on fixed-length batches of ``lora_batch`` examples with fused AdamW (on CUDA).

    Achieved TFLOP/s count the model's FLOPs (:func:`forward_flops`; training: forward, the
    activation gradients through the frozen blocks and the LoRA weight gradients), not the
    ``flops`` cost model's ``2·N`` per token (which counts the embedding matrix as well)."""
    out: dict[str, Any] = {}
    items = max(1, (prompt_tokens - 3) // 2)  # 2 context tokens + 2 per evidence item + answer cue
    gen = HFGenerator(HFOptions(tiny=arch, device=device, template="cluster_tokens",
                                evidence_items=items, prompt_length=prompt_tokens), catalog)
    contexts = all_contexts(len(catalog))
    if quick:
        contexts = contexts[:16384]
    evidence = _random_evidence(contexts, len(catalog), width=items)
    config = gen.model.config
    blocks = _block_parameters(gen.model)
    out["gpu_model_parameters"] = gen.num_parameters()
    out["gpu_dtype"] = str(gen.dtype).removeprefix("torch.")
    out["gpu_rank_prompt_tokens"] = prompt_tokens
    out["gpu_rank_batch_size"] = gen.rank_batch_size(with_evidence=True)
    rate = rank_throughput(gen, contexts, evidence)
    out["gpu_rank_contexts_per_s"] = round(rate, 1)
    out["gpu_rank_tflops"] = round(rate * forward_flops(config, blocks, prompt_tokens, 1) / 1e12, 3)
    out["gpu_rank_vs_target_17000"] = round(rate / 17000.0, 3)
    # the anchor: plain transformers generate() of the whole answer (cluster token + end), same prompts
    n = min(len(contexts), 8192)
    enc = gen.encode(contexts[:n], evidence.take(slice(0, n)), None)
    ids = torch.from_numpy(enc.ids).to(gen.device)
    mask = torch.from_numpy((enc.ids != gen.codec.pad_id).astype(np.int64)).to(gen.device)
    with torch.inference_mode():
        gen.model.generate(input_ids=ids[:256], attention_mask=mask[:256], max_new_tokens=2,
                           do_sample=False, pad_token_id=gen.codec.pad_id)
        _sync(gen.device)
        started = time.perf_counter()
        for part in range(0, n, 2048):
            gen.model.generate(input_ids=ids[part : part + 2048], attention_mask=mask[part : part + 2048],
                               max_new_tokens=2, do_sample=False, pad_token_id=gen.codec.pad_id)
        _sync(gen.device)
    baseline = n / (time.perf_counter() - started)
    out["gpu_generate_baseline_contexts_per_s"] = round(baseline, 1)
    # the model's forward alone on the same encoded prompts (what ranking adds is encoding + top-k)
    size = min(n, out["gpu_rank_batch_size"])
    with torch.inference_mode():
        gen.model(input_ids=ids[:size], attention_mask=mask[:size], logits_to_keep=1)
        _sync(gen.device)
        started = time.perf_counter()
        for part in range(0, n, size):
            gen.model(input_ids=ids[part : part + size], attention_mask=mask[part : part + size],
                      logits_to_keep=1)
        _sync(gen.device)
    out["gpu_forward_only_contexts_per_s"] = round(n / (time.perf_counter() - started), 1)
    out["gpu_rank_vs_generate"] = round(rate / baseline, 2)
    lora = lora_throughput(gen, contexts, items, lora_batch=lora_batch, steps=lora_steps, quick=quick)
    out["gpu_lora_fused_adamw"] = lora["fused_adamw"]
    out["gpu_lora_batch"] = f"{lora_batch} x {lora['length']} tokens"
    out["gpu_lora_tokens_per_s"] = lora["tokens_per_s"]
    out["gpu_lora_tflops"] = lora["tflops"]
    out["gpu_lora_vs_target_100000"] = round(lora["tokens_per_s"] / 100000.0, 3)
    for batch in more_lora_batches:  # the same model at other batch sizes (``gpu_lora_batch_B_*``)
        more = lora_throughput(gen, contexts, items, lora_batch=batch, steps=lora_steps, quick=quick)
        out[f"gpu_lora_batch_{batch}_tokens_per_s"] = more["tokens_per_s"]
        out[f"gpu_lora_batch_{batch}_tflops"] = more["tflops"]
    return out


def lora_throughput(
    gen: HFGenerator, contexts: np.ndarray, items: int, *, lora_batch: int,
    steps: int | None = None, quick: bool = False,
) -> dict[str, Any]:
    """Tokens per second and achieved TFLOP/s of LoRA training (attention projections, r 8) on
    ``gen``'s model: fixed-length batches of ``lora_batch`` random evidence prompts, AdamW (fused
    when the parameters are on CUDA, as the ``lora`` fine-tuner does), two warm-up steps untimed."""
    from peft import LoraConfig, get_peft_model

    catalog = gen.catalog
    config = gen.model.config
    blocks = _block_parameters(gen.model)
    model, _ = gen.model_from_adapter(None, trainable=True)
    with quiet_transformers():
        model = get_peft_model(model, LoraConfig(
            r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            task_type="CAUSAL_LM",
        ))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    fused = all(p.is_cuda for p in params)  # one kernel per step
    optimizer = torch.optim.AdamW(params, lr=1e-4, fused=True if fused else None)
    trainable = int(sum(p.numel() for p in params))
    rng = np.random.default_rng(0)
    steps = steps if steps is not None else (3 if quick else 20)
    tokens, elapsed, flops, length = 0, 0.0, 0.0, 0
    for step in range(steps + 2):
        rows = rng.integers(0, len(contexts), lora_batch)
        ctx = contexts[rows]
        labels = (ctx[:, 1] + 1) % len(catalog)
        labels = np.where(labels == ctx[:, 0], (labels + 1) % len(catalog), labels)
        batch = gen.training_batch(ctx, _random_evidence(ctx, len(catalog), step, width=items), None, labels)
        _sync(gen.device)
        started = time.perf_counter()
        loss = answer_nll(model, batch).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        _sync(gen.device)
        if step >= 2:  # the first steps warm up kernels and the allocator
            elapsed += time.perf_counter() - started
            b, length = batch["input_ids"].shape[:2]
            tokens += int(b * length)
            kept = int(batch["targets"].shape[1]) + 1
            # forward + activation gradients (2x forward) + LoRA weight gradients (2 per parameter)
            flops += b * (3 * forward_flops(config, blocks, length, kept) + 2 * trainable * length)
    del model, optimizer
    return {"tokens_per_s": round(tokens / elapsed, 1), "tflops": round(flops / elapsed / 1e12, 3),
            "fused_adamw": fused, "length": int(length)}


#: the GPU keys every run reports (numbers on CUDA, the reason otherwise)
GPU_KEYS: tuple[str, ...] = (
    "gpu_rank_contexts_per_s", "gpu_rank_tflops", "gpu_lora_tokens_per_s", "gpu_lora_tflops",
)


def gpu_not_measured(reason: str) -> dict[str, Any]:
    """The GPU keys, each saying why it was not measured."""
    return {key: f"not measured: {reason}" for key in GPU_KEYS}


def matmul_peak(device: Any, size: int = 8192, reps: int = 20) -> float:
    """FLOP/s of a ``size``-cubed bfloat16 matmul on ``device`` (the ceiling TFLOP/s compare with)."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync(torch.device(device))
    began = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(torch.device(device))
    return 2.0 * size**3 * reps / (time.perf_counter() - began)


def described_catalog(n: int) -> ClusterCatalog:
    """``n`` clusters with two-genre descriptions (for benchmarks that need no data set)."""
    genres = ["action", "drama", "comedy", "horror", "romance", "thriller", "crime", "sci-fi"]
    return ClusterCatalog.from_descriptions(
        [f"{genres[i % len(genres)]} {genres[(i // len(genres)) % len(genres)]} c{i}" for i in range(n)]
    )


#: clusters in the ML-1M catalog (``categories`` clustering): the GPU suite's catalog size
ML1M_CLUSTERS = 301


def gpu_finetune_numbers(arch: TinyArch = SMOLLM2_SHAPE, device: str = "cuda", *,
                         max_examples: int = 20000, holdout_max: int = 500) -> dict[str, Any]:
    """The shipped path on ``device``: the demo's generator (``rerank`` template, slot readout,
    numeric evidence) at ``arch``'s shape, trained by the ``lora`` fine-tuner with the demo's
    options on the ``synthetic`` data set — the first fine-tune (every weight, the base), then a
    warm-started LoRA on the next window — and the table ranked with evidence. Train tokens per
    second come from each adapter's manifest (training alone; building examples and the held-out
    evaluation are in ``*_seconds``)."""
    from hybridrec_lora import LoraFineTuner, LoraOptions
    from hybridrec_lora.evidence import daily_backoff_successors

    from hybridrec.backtest.config import DEMO_FINE_TUNE, DEMO_GENERATOR
    from hybridrec.data import load_prepared

    prepared = load_prepared("synthetic")
    catalog, transitions = prepared.catalog, prepared.transitions
    options = {**DEMO_GENERATOR, "tiny": arch.model_dump(), "device": device}
    gen = HFGenerator(HFOptions(**options), catalog)
    ts = transitions.ts
    span = int(ts.max()) - int(ts.min())
    cut1, cut2 = int(ts.min()) + span // 2, int(ts.min()) + 3 * span // 4
    first = TimeWindow(start=_utc(int(ts.min())), end=_utc(cut1))
    second = TimeWindow(start=_utc(cut1), end=_utc(cut2))
    knobs = {**DEMO_FINE_TUNE, "max_examples": max_examples, "holdout_max": holdout_max}
    out: dict[str, Any] = {"gpu_finetune_model_parameters": gen.num_parameters()}
    with tempfile.TemporaryDirectory(prefix="hybridrec-gpu-") as tmp:
        for name, window, options_, previous in (
            ("base", first, {**knobs, "base_epochs": 1.0}, None),
            ("lora", second, knobs, Path(tmp) / "base"),
            # the same LoRA with 8x larger batches (and 8x the learning rate): the dispatch cost
            # of a step is paid once per 2,048 examples instead of once per 256
            ("lora_batch_2048", second, {**knobs, "batch_size": 2048, "lr": 8 * LoraOptions().lr},
             Path(tmp) / "base"),
        ):
            result = LoraFineTuner(LoraOptions(**options_)).fine_tune(
                gen, transitions, window, Path(tmp) / name, previous_adapter=previous
            )
            cost = result.manifest["cost"]
            out[f"gpu_finetune_{name}_examples"] = result.manifest["data"]["train_examples"]
            out[f"gpu_finetune_{name}_train_tokens"] = result.train_tokens
            out[f"gpu_finetune_{name}_train_seconds"] = cost["train_seconds"]
            out[f"gpu_finetune_{name}_seconds"] = round(result.seconds, 2)
            out[f"gpu_finetune_{name}_train_tokens_per_s"] = round(
                result.train_tokens / max(float(cost["train_seconds"]), 1e-9), 1
            )
        gen.load_adapter(Path(tmp) / "lora")
        contexts = all_contexts(len(catalog))
        defaults = LoraOptions()
        evidence = daily_backoff_successors(
            transitions, contexts, np.full(len(contexts), cut2, dtype=np.int64), days=None,
            m=int(DEMO_GENERATOR["evidence_items"]), alpha=defaults.evidence_backoff_alpha,
            weights=defaults.evidence_backoff_weights,
        )
        out["gpu_rerank_contexts"] = len(contexts)
        out["gpu_rerank_contexts_per_s"] = round(rank_throughput(gen, contexts, evidence), 1)
    return out


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def gpu_suite(quick: bool) -> dict[str, Any]:
    """SmolLM2-135M-shape ranking, LoRA and fine-tune throughput on CUDA (no data set needed)."""
    if not torch.cuda.is_available():
        return gpu_not_measured(
            "no CUDA device in this run (torch.cuda.is_available() is False); the code path is "
            "tested on CPU at a small size (tests/generator/test_gpu_path.py)"
        )
    out: dict[str, Any] = {"gpu_device": torch.cuda.get_device_name(0),
                           "torch": torch.__version__, "clusters": ML1M_CLUSTERS}
    out["gpu_matmul_peak_tflops"] = round(matmul_peak("cuda") / 1e12, 1)
    _log("ranking and LoRA throughput (cluster-token prompts, 32 tokens)")
    catalog = described_catalog(ML1M_CLUSTERS)
    out.update(gpu_numbers(catalog, quick, more_lora_batches=(2048,)))
    torch.cuda.empty_cache()
    _log("the shipped fine-tuner and rerank ranking end to end (synthetic data set)")
    out.update(gpu_finetune_numbers(max_examples=5000 if quick else 20000))
    _log("the demo's rerank generator at SmolLM2-135M's shape ranking a 301-cluster catalog")
    out.update(gpu_rerank_numbers(catalog, quick))
    return out


def gpu_rerank_numbers(catalog: ClusterCatalog, quick: bool, arch: TinyArch = SMOLLM2_SHAPE,
                       device: str = "cuda") -> dict[str, Any]:
    """Table regeneration as the demo runs it, at ``arch``'s shape: the ``rerank`` template
    (10 candidate slots with count evidence as buckets and numbers, slot readout) ranking every
    context of ``catalog`` (random candidates and counts; an untrained model ranks as fast)."""
    from hybridrec.backtest.config import DEMO_GENERATOR

    gen = HFGenerator(HFOptions(**{**DEMO_GENERATOR, "tiny": arch.model_dump(), "device": device}), catalog)
    contexts = all_contexts(len(catalog))
    if quick:
        contexts = contexts[:16384]
    evidence = _random_count_evidence(contexts, len(catalog), int(DEMO_GENERATOR["evidence_items"]))
    rate = rank_throughput(gen, contexts, evidence)
    return {"gpu_rerank_catalog_contexts": len(contexts),
            "gpu_rerank_catalog_batch_size": gen.rank_batch_size(with_evidence=True),
            "gpu_rerank_catalog_contexts_per_s": round(rate, 1)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def generator_suite(quick: bool) -> dict[str, Any]:
    """Tiny-preset ranking and fine-tune cost on ML-1M; SmolLM2-shape numbers on CUDA."""
    from hybridrec.data import load_prepared

    prepared = load_prepared("ml-1m")
    catalog, transitions = prepared.catalog, prepared.transitions
    results: dict[str, Any] = {"clusters": len(catalog), "torch_threads": torch.get_num_threads()}
    gen = HFGenerator(HFOptions(device="cpu"), catalog)
    contexts = all_contexts(len(catalog))
    if quick:
        contexts = contexts[:4096]
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
        results.update(gpu_not_measured(
            "no CUDA device in this run (torch.cuda.is_available() is False); the code path is "
            "tested on CPU at a small size (tests/generator/test_gpu_path.py)"
        ))
    return results
