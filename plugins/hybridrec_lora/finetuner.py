"""The ``lora`` FineTuner: peft LoRA on the model of any generator that offers the
:class:`~hybridrec.capabilities.TrainableGenerator` capability (the built-in ``hf`` generator does).

What one :meth:`LoraFineTuner.fine_tune` does, in order:

1. takes the window's transitions and splits off a time-ordered held-out tail
   (``holdout_fraction``, at most ``holdout_max`` rows);
2. balances the rest per label (``balance``: ``cap`` keeps at most ``balance_factor`` × the mean
   count of each next cluster, the most recent first; ``reweight`` keeps all rows and down-weights
   popular labels; ``none``), then keeps ``max_examples``: the most recent (``sample="recent"``)
   or evenly spaced over the whole window (``"window"``: what changed since its start, at the
   same cost);
3. gives a ``rag_fraction`` share of the examples an evidence block computed only from data before
   each example's time (``evidence_fn`` if given, else all earlier transitions over the trailing
   ``evidence_days``, ranked by ``evidence_ranking``), so the model learns to use fresh evidence
   without leakage, from the same kind of evidence a snapshot of all earlier data serves;
4. starts from ``previous_adapter`` (``warm_start``) or from the base model; an untrained base
   (the ``tiny`` preset) is trained whole first when ``train_base_if_untrained`` (recorded in the
   manifest as ``kind: "full"``), since a LoRA on random weights learns nothing useful.
   ``mode="full"`` trains every weight of the warm-started model on later fine-tunes too (a
   small model from scratch has no pretrained knowledge for a low-rank update to protect);
5. trains with AdamW (warm-up then cosine decay), checkpointing every ``checkpoint_every`` steps
   into ``out_dir/checkpoints`` and resuming from the latest checkpoint of the same job. With
   ``select_epoch``, the held-out tail's answer NLL is measured before training (for a
   warm start) and after each epoch, and the weights of the best point are kept: the number of
   epochs is chosen on data the job did not train on, and a fine-tune never ends worse on its
   held-out tail than the model it started from;
6. measures held-out ``hr@1``, ``hr@5``, ``recall`` (HR@``recall_k``), their evidence-prompt
   variants ``*_rag``, and ``exact_match_rate`` (free generation that maps exactly to a catalog
   description), writes ``lora/`` (and ``base/`` when the base is not the preset's) plus
   ``manifest.json``, and activates the new adapter on the generator.

Promotion is never decided here: see :mod:`hybridrec.guardrails`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import shutil
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

from hybridrec import distributed
from hybridrec.artifacts import sha256_file
from hybridrec.capabilities import AddedTokens, TrainableGenerator
from hybridrec.errors import DataError, PluginError
from hybridrec.interfaces import EvidenceFn, FineTuner, FineTuneResult, Generator
from hybridrec.types import EvidenceBatch, TimeWindow, TransitionSet, Workload
from hybridrec_lora.evidence import daily_backoff_successors, trailing_top_successors

if TYPE_CHECKING:
    from hybridrec.plugin_refs import EvidenceConfig

SCHEMA = "hybridrec.adapter/1"
CHECKPOINTS = "checkpoints"
CHECKPOINT_FILES = ("trainable.safetensors", "optimizer.pt")
MANIFEST = "manifest.json"


@contextlib.contextmanager
def _quiet_peft() -> Iterator[None]:
    """Silence peft's deprecation noise (nothing for users to act on)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        yield


class LoraOptions(BaseModel):
    """Options of the ``lora`` fine-tuner.

    Cost knobs: ``max_examples``, ``epochs``, ``base_epochs``, ``max_steps``, ``batch_size``. On the
    tiny preset (2 CPU cores, ML-1M) the defaults pre-train the base on a month in about 25 s;
    ``max_examples=10000, epochs=1`` makes a warm-start monthly LoRA fine-tune about 4 s.
    ``balance="cap"`` follows the paper's predecessor (no collapse onto popular clusters) but
    costs hit rate on ML-1M; ``balance="none"`` ranks better there.
    """

    model_config = ConfigDict(extra="forbid")

    r: int = Field(default=8, ge=1)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    mode: Literal["lora", "full"] = Field(
        default="lora",
        description="lora: low-rank matrices on a frozen base; full: every weight of the "
        "warm-started model (for small models trained from scratch, like the tiny preset).",
    )
    select_epoch: bool = Field(
        default=False,
        description="Measure the held-out answer NLL before training (warm start) and after each "
        "epoch; keep the best weights (early stopping chosen on held-out data).",
    )
    target_modules: Literal["attention", "all-linear"] | list[str] = Field(
        default="attention", description="attention projections, all linear layers, or names."
    )
    lr: float = Field(default=2e-3, gt=0, description="Learning rate of a fine-tune (LoRA, or full warm-started).")
    base_lr: float = Field(default=2e-3, gt=0, description="Learning rate when training the base.")
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_fraction: float = Field(default=0.05, ge=0, lt=1)
    epochs: float = Field(default=1.0, gt=0, description="Passes over the examples (a fine-tune; the maximum with select_epoch).")
    base_epochs: float = Field(default=3.0, gt=0, description="Passes when training the base.")
    max_steps: int | None = Field(default=None, ge=1, description="Hard cap on optimiser steps.")
    max_examples: int | None = Field(
        default=None, ge=1, description="Keep this many examples after balancing (see sample)."
    )
    sample: Literal["recent", "window"] = Field(
        default="recent",
        description="Which max_examples are kept: the most recent, or evenly spaced over the "
        "whole window (a fine-tune then learns from every day since the window's start).")
    batch_size: int = Field(default=256, ge=1)
    balance: Literal["cap", "reweight", "none"] = "cap"
    balance_factor: float = Field(
        default=4.0, gt=0, description="Per-label cap as a multiple of the mean label count."
    )
    rag_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    evidence_days: float | None = Field(
        default=30.0, gt=0, description="Trailing window of self-built evidence (None: all)."
    )
    evidence_ranking: Literal["pair", "backoff"] = Field(
        default="pair",
        description="Self-built evidence: the context's most frequent successors (pair), or its "
        "markov-backoff ranking as of the example's day (backoff; pair with a knowledge store "
        "of granularity 'backoff' and the same alpha and weights, so training and serving "
        "prompts carry the same kind of evidence).",
    )
    evidence_backoff_alpha: float = Field(default=128.0, ge=0.0)
    evidence_backoff_weights: tuple[float, float, float] = (0.7, 0.3, 0.0)
    evidence_half_life_days: float | None = Field(
        default=None, gt=0,
        description="Backoff evidence only: decay the counts to the example's day, a transition "
        "a days old weighing 2**(-a / evidence_half_life_days); set it to the knowledge store's "
        "half_life_days. None: no decay.",
    )
    evidence_recent_days: int | None = Field(
        default=None, ge=1,
        description="Backoff evidence only: also fill the recent-window counts (EvidenceBatch."
        "recent) over this many days before the example's day; set it to the knowledge store's "
        "recent_days, for a generator that renders them (hf rerank_recent).",
    )
    collapse_retries: int = Field(
        default=0, ge=0, le=5,
        description="When the base is trained here (from scratch): if the trained model's "
        "held-out HR@5 from the context alone is no better than popularity's (the training "
        "labels' most frequent clusters) on the same held-out rows, the training collapsed onto "
        "popularity; train it again from the fresh base with another data order, up to this "
        "many times, and keep the best (metrics hr@5_popularity, base_attempts).",
    )
    warm_start: bool = Field(default=True, description="Continue previous_adapter when given.")
    train_base_if_untrained: bool = True
    holdout_fraction: float = Field(default=0.1, gt=0, lt=1)
    holdout_max: int = Field(default=2000, ge=1)
    guardrail_samples: int = Field(default=256, ge=1, description="Free generations measured.")
    recall_k: int = Field(default=5, ge=1)
    checkpoint_every: int = Field(default=100, ge=1)
    keep_checkpoints: bool = False
    seed: int = 0

    @model_validator(mode="after")
    def _recent_needs_backoff(self) -> LoraOptions:
        for name in ("evidence_recent_days", "evidence_half_life_days"):
            if getattr(self, name) is not None and self.evidence_ranking != "backoff":
                raise ValueError(
                    f"{name} needs evidence_ranking='backoff' (an option of the backoff "
                    "estimator's counts)"
                )
        return self


@dataclass
class Examples:
    """Training (or held-out) rows: contexts, labels, times, loss weights, evidence rows."""

    contexts: np.ndarray
    labels: np.ndarray
    ts: np.ndarray
    weights: np.ndarray
    evidence: EvidenceBatch | None  # aligned with the rows; used where ``rag`` is True
    rag: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def popularity_hr(train: Examples, holdout: Examples, k: int = 5) -> float:
    """Held-out HR@``k`` of popularity: the training labels' ``k`` most frequent clusters
    (ties: lower id), skipping each held-out context's own clusters."""
    if len(holdout) == 0:
        return 0.0
    counts = np.bincount(train.labels, minlength=int(max(train.labels.max(initial=0), holdout.labels.max()) + 1))
    order = np.lexsort((np.arange(counts.size), -counts))[: k + holdout.contexts.shape[1]]
    hits = 0
    for context, label in zip(holdout.contexts.tolist(), holdout.labels.tolist(), strict=True):
        top = [c for c in order.tolist() if c not in context][:k]
        hits += label in top
    return hits / len(holdout)


def holdout_split(n: int, fraction: float, maximum: int) -> int:
    """Index where the time-ordered held-out tail starts (at least one row on each side)."""
    if n < 2:
        raise DataError(f"a fine-tune needs at least 2 transitions in its window, got {n}")
    size = min(maximum, max(1, round(n * fraction)), n - 1)
    return n - size


def balance_labels(
    labels: np.ndarray, mode: str, factor: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rows to keep (time order preserved) and their loss weights.

    ``cap``: at most ``ceil(factor * mean count)`` rows per label, the most recent ones.
    ``reweight``: every row, weight ``min(1, cap / count(label))``. ``none``: every row, weight 1.
    """
    n = labels.shape[0]
    if n == 0 or mode == "none":
        return np.arange(n), np.ones(n)
    values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    cap = max(1, math.ceil(factor * n / len(values)))
    if mode == "reweight":
        return np.arange(n), np.minimum(1.0, cap / counts[inverse])
    order = np.lexsort((-np.arange(n), inverse))  # by label, newest first
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts[inverse[order]]
    keep = np.flatnonzero(rank < cap)
    return keep, np.ones(keep.shape[0])


def _resolve_targets(model: Any, spec: str | list[str]) -> list[str] | str:
    if isinstance(spec, list):
        return spec
    if spec == "all-linear":
        return "all-linear"
    names: set[str] = set()
    for name, module in model.named_modules():
        parts = name.split(".")
        is_linear = isinstance(module, torch.nn.Linear) or type(module).__name__ == "Conv1D"
        if is_linear and len(parts) >= 2 and ("attn" in parts[-2] or "attention" in parts[-2]):
            names.add(".".join(parts[-2:]))
    if not names:
        raise PluginError("lora: found no attention projections; set target_modules explicitly")
    return sorted(names)


def _fused(params: list[torch.Tensor]) -> dict[str, Any]:
    """``fused=True`` for AdamW when every parameter is on CUDA: one kernel per step instead of
    several per parameter tensor, so small-batch LoRA steps are not launch-bound."""
    return {"fused": True} if params and all(p.is_cuda for p in params) else {}


def _token_rows(model: Any, ids: list[int]) -> list[int] | dict[str, list[int]] | None:
    """peft's ``trainable_token_indices`` for the embedding rows ``ids``: the input embedding's
    rows (with tied embeddings the output rows follow them), and with untied embeddings the
    output embedding's rows too, since an answer token's output row is what ranks it."""
    if not ids:
        return None
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    if out is None or out.weight is inp.weight:
        return list(ids)
    names = {id(m): n for n, m in model.named_modules()}
    return {names[id(inp)]: list(ids), names[id(out)]: list(ids)}


def _hash_arrays(*arrays: np.ndarray) -> str:
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()


class LoraFineTuner(FineTuner):
    """peft LoRA fine-tuning of a :class:`~hybridrec.capabilities.TrainableGenerator` (see the
    module docstring)."""

    name: ClassVar[str] = "lora"
    Options: ClassVar[type[BaseModel]] = LoraOptions
    #: Runs as one rank of a torchrun/accelerate job (see :mod:`hybridrec.distributed`): each rank
    #: trains on its shard of every batch under DistributedDataParallel; rank 0 writes outputs.
    supports_distributed: ClassVar[bool] = True

    @classmethod
    def evidence_options(cls, recipe: EvidenceConfig, options: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
        """From the evidence recipe: the training evidence's ranking and history window, and
        with the backoff estimator its alpha, weights, decay and recent window (the serving
        store's)."""
        out: dict[str, tuple[str, Any]] = {
            "evidence_ranking": ("estimator", recipe.estimator),
            "evidence_days": ("history_days", recipe.history_days),
        }
        if recipe.estimator == "backoff":
            out.update(evidence_backoff_alpha=("alpha", recipe.alpha),
                       evidence_backoff_weights=("weights", recipe.weights),
                       evidence_half_life_days=("half_life_days", recipe.half_life_days),
                       evidence_recent_days=("recent_days", recipe.recent_days))
        return out

    # -- data -----------------------------------------------------------------------------------

    def _evidence(
        self,
        history: TransitionSet,
        contexts: np.ndarray,
        as_of: np.ndarray,
        evidence_fn: EvidenceFn | None,
        m: int,
    ) -> EvidenceBatch:
        if evidence_fn is not None:
            batch = evidence_fn(contexts, as_of)
            if len(batch) != contexts.shape[0]:
                raise PluginError(
                    f"evidence_fn returned {len(batch)} rows for {contexts.shape[0]} contexts"
                )
            return batch
        opts: LoraOptions = self.options
        if opts.evidence_ranking == "backoff":
            return daily_backoff_successors(
                history, contexts, as_of, days=opts.evidence_days, m=m,
                alpha=opts.evidence_backoff_alpha, weights=opts.evidence_backoff_weights,
                recent_days=opts.evidence_recent_days, half_life_days=opts.evidence_half_life_days,
            )
        return trailing_top_successors(history, contexts, as_of, days=opts.evidence_days, m=m)

    def build_examples(
        self,
        window_rows: TransitionSet,
        evidence_fn: EvidenceFn | None,
        evidence_items: int,
        history: TransitionSet | None = None,
    ) -> tuple[Examples, Examples]:
        """Training and held-out examples from the window's transitions (time-ordered split).

        Self-built evidence is read from ``history`` (default: the window's rows), before each
        example's time: pass the whole history so that training prompts carry the evidence a
        snapshot of all earlier data gives at serving time (no train/serve skew)."""
        source = window_rows if history is None else history
        opts: LoraOptions = self.options
        n = len(window_rows)
        split = holdout_split(n, opts.holdout_fraction, opts.holdout_max)
        ctx = window_rows.contexts()
        keep, weights = balance_labels(window_rows.c3[:split], opts.balance, opts.balance_factor)
        if opts.max_examples is not None and keep.shape[0] > opts.max_examples:
            if opts.sample == "window":  # evenly spaced in time order, the newest row included
                chosen = np.unique(np.round(np.linspace(0, keep.shape[0] - 1, opts.max_examples)).astype(np.int64))
            else:
                chosen = np.arange(keep.shape[0] - opts.max_examples, keep.shape[0])
            keep, weights = keep[chosen], weights[chosen]
        rng = np.random.default_rng(opts.seed)
        rag: np.ndarray = np.asarray(rng.random(keep.shape[0]) < opts.rag_fraction)
        m = max(1, evidence_items)
        evidence = None
        if rag.any():
            evidence = self._evidence(source, ctx[keep], window_rows.ts[keep], evidence_fn, m)
        train = Examples(ctx[keep], window_rows.c3[keep], window_rows.ts[keep], weights, evidence, rag)
        held = np.arange(split, n)
        held_evidence = self._evidence(source, ctx[held], window_rows.ts[held], evidence_fn, m)
        holdout = Examples(
            ctx[held], window_rows.c3[held], window_rows.ts[held], np.ones(held.shape[0]),
            held_evidence, np.ones(held.shape[0], dtype=bool),
        )
        return train, holdout

    def _schedule(self, train: Examples, epochs: float, attempt: int = 0) -> list[np.ndarray]:
        """Row indices of every optimiser step, deterministic in the seed (and the ``attempt``
        of a retried base training). Each batch is all-RAG or all-plain so its prompts share
        one length (no padding)."""
        opts: LoraOptions = self.options
        size = opts.batch_size
        per_epoch = max(1, math.ceil(len(train) / size))
        total = max(1, math.ceil(epochs * per_epoch))
        if opts.max_steps is not None:
            total = min(total, opts.max_steps)
        steps: list[np.ndarray] = []
        epoch = 0
        while len(steps) < total:
            rng = np.random.default_rng([opts.seed, epoch] if attempt == 0 else [opts.seed, epoch, attempt])
            groups = [np.flatnonzero(train.rag), np.flatnonzero(~train.rag)]
            chunks = [
                part
                for group in groups
                for part in np.array_split(rng.permutation(group), max(1, math.ceil(len(group) / size)))
                if part.size
            ]
            steps.extend(chunks[i] for i in rng.permutation(len(chunks)))
            epoch += 1
        return steps[:total]

    # -- model ----------------------------------------------------------------------------------

    def _prepare_model(
        self, gen: TrainableGenerator, previous_adapter: Path | None
    ) -> tuple[Any, str, str]:
        """The model to train, its kind (``full``/``lora``) and where its base came from."""
        opts: LoraOptions = self.options
        start = previous_adapter if previous_adapter is not None else None
        model, base_trained = gen.model_from_adapter(start, trainable=opts.warm_start)
        from peft import LoraConfig, PeftModel, get_peft_model

        has_base = start is not None and gen.adapter_has_base(Path(start))
        source = f"previous_adapter:{start}" if has_base else "preset"
        if isinstance(model, PeftModel):
            if opts.warm_start and opts.mode == "lora":
                return model, "lora", source
            # full: fold the previous LoRA into the weights it trains; no warm start: keep a
            # trained base, drop the previous LoRA weights
            model = model.merge_and_unload() if opts.warm_start else model.unload()
        if base_trained and opts.mode == "full":
            for p in model.parameters():
                p.requires_grad_(True)
            return model, "full", source
        if not base_trained:
            if not opts.train_base_if_untrained:
                raise PluginError(
                    "lora: the base model is untrained (tiny preset) and "
                    "train_base_if_untrained is false; pass a previous_adapter or enable it"
                )
            for p in model.parameters():
                p.requires_grad_(True)
            return model, "full", "trained_here"
        # tokens the generator added to a pretrained vocabulary: train (and save) those rows only
        added = gen.added_token_ids() if isinstance(gen, AddedTokens) else []
        config = LoraConfig(
            r=opts.r,
            lora_alpha=opts.alpha,
            lora_dropout=opts.dropout,
            target_modules=_resolve_targets(model, opts.target_modules),
            bias="none",
            task_type="CAUSAL_LM",
            trainable_token_indices=_token_rows(model, added),
        )
        with torch.random.fork_rng(devices=[]), _quiet_peft():
            torch.manual_seed(opts.seed)  # LoRA A matrices are initialised at random
            wrapped = get_peft_model(model, config)
        return wrapped, "lora", source

    # -- the job --------------------------------------------------------------------------------

    def fine_tune(
        self,
        generator: Generator,
        transitions: TransitionSet,
        window: TimeWindow,
        out_dir: Path,
        *,
        previous_adapter: Path | None = None,
        evidence_fn: EvidenceFn | None = None,
        progress: bool = False,
    ) -> FineTuneResult:
        """Train, evaluate and save an adapter (see the module docstring)."""
        if not isinstance(generator, TrainableGenerator):
            raise PluginError(
                f"the lora fine-tuner needs a generator that offers "
                f"hybridrec.capabilities.TrainableGenerator (the built-in 'hf' generator does); "
                f"{type(generator).__name__!r} does not"
            )
        gen = generator
        opts: LoraOptions = self.options
        started = time.perf_counter()
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        rows = transitions.window(window)
        if len(rows) < 2:
            raise DataError(
                f"window {window.start.date()}..{window.end.date()} holds {len(rows)} transitions; "
                "a fine-tune needs at least 2 (widen the window)"
            )
        m = max(1, gen.evidence_items)
        train, holdout = self.build_examples(rows, evidence_fn, m, history=transitions)
        model, kind, base_source = self._prepare_model(gen, previous_adapter)
        scratch = base_source == "trained_here"
        epochs = opts.base_epochs if scratch else opts.epochs
        schedule = self._schedule(train, epochs)
        fingerprint = self._fingerprint(gen, rows, window, previous_adapter, kind)
        trained = self._train(
            gen, model, train, schedule, fingerprint, out_dir, progress,
            lr=opts.base_lr if scratch else opts.lr,
            holdout=holdout if opts.select_epoch else None,
            start_is_candidate=not scratch,
        )
        train_seconds = time.perf_counter() - started
        model.eval()
        eval_started = time.perf_counter()
        metrics = self.evaluate(gen, model, holdout, progress=progress)
        if scratch and opts.collapse_retries:
            # A base trained from scratch can settle on popularity whatever the context (seen
            # on another CPU: the no-evidence arm scored exactly popularity's HR). Detected on
            # the held-out tail, never on test data; retrained with another data order.
            popular = popularity_hr(train, holdout)
            attempt = 0
            while metrics["hr@5"] <= popular and attempt < opts.collapse_retries:
                attempt += 1
                retry_started = time.perf_counter()
                again, _, _ = self._prepare_model(gen, previous_adapter)
                again_trained = self._train(
                    gen, again, train, self._schedule(train, epochs, attempt),
                    f"{fingerprint}-attempt{attempt}", out_dir, progress, lr=opts.base_lr,
                    holdout=holdout if opts.select_epoch else None, start_is_candidate=False,
                )
                again.eval()
                train_seconds += time.perf_counter() - retry_started
                eval_started += time.perf_counter() - retry_started  # retraining is not evaluation
                again_metrics = self.evaluate(gen, again, holdout, progress=progress)
                if again_metrics["hr@5"] > metrics["hr@5"]:
                    model, trained, metrics = again, again_trained, again_metrics
            metrics["hr@5_popularity"] = popular
            metrics["base_attempts"] = float(attempt + 1)
        metrics["train_loss"] = trained["final_loss"]
        if trained["selection"] is not None:
            metrics["selected_epoch"] = float(trained["selection"]["epoch"])
            metrics["holdout_nll"] = float(trained["selection"]["nll"])
        eval_seconds = time.perf_counter() - eval_started
        ctx = distributed.current()
        if ctx.is_main:
            gen.save_trained(model, out_dir, full=kind == "full", previous_adapter=previous_adapter)
        seconds = time.perf_counter() - started
        trainable = trained["trainable_parameters"]
        manifest = {
            "schema": SCHEMA,
            "plugin": self.name,
            "kind": kind,
            "base_model_id": gen.base_model_id,
            "base_model_hash": gen.base_model_hash(),
            "base_source": base_source,
            "trained_base": kind == "full",
            "warm_start_from": str(previous_adapter) if previous_adapter and opts.warm_start else None,
            "catalog_hash": gen.catalog.hash,
            "catalog_size": len(gen.catalog),
            "template_version": gen.template_version,
            "codec": gen.codec_kind,
            "generator_options": gen.options.model_dump(mode="json"),
            "window": {"start": window.start.isoformat(), "end": window.end.isoformat()},
            "data": {
                "transitions_in_window": len(rows),
                "train_examples": len(train),
                "rag_examples": int(train.rag.sum()),
                "holdout_examples": len(holdout),
                "holdout_start": str(np.datetime64(int(holdout.ts[0]), "s")) + "Z",
                "evidence": "evidence_fn" if evidence_fn is not None else f"self-built ({opts.evidence_ranking})",
                "fingerprint": fingerprint,
            },
            "hyperparameters": opts.model_dump(mode="json"),
            "metrics": metrics,
            "cost": {
                "train_tokens": trained["train_tokens"],
                "steps": len(schedule),
                "resumed_from_step": trained["resumed_from"],
                "epoch_selection": trained["selection"],
                "trainable_parameters": trainable,
                "model_parameters": int(sum(p.numel() for p in model.parameters())),
                "train_seconds": round(train_seconds, 3),
                "eval_seconds": round(eval_seconds, 3),
                "seconds": round(seconds, 3),
            },
        }
        if ctx.is_main:
            (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            if not opts.keep_checkpoints:
                shutil.rmtree(out_dir / CHECKPOINTS, ignore_errors=True)
        ctx.barrier()  # every rank loads the adapter rank 0 wrote
        gen.load_adapter(out_dir)
        return FineTuneResult(
            adapter_path=out_dir,
            manifest=manifest,
            metrics=metrics,
            train_tokens=trained["train_tokens"],
            seconds=time.perf_counter() - started,
        )

    def _fingerprint(
        self,
        gen: TrainableGenerator,
        rows: TransitionSet,
        window: TimeWindow,
        previous_adapter: Path | None,
        kind: str,
    ) -> str:
        blob = json.dumps(
            {
                "options": self.options.model_dump(mode="json"),
                "generator": gen.options.model_dump(mode="json"),
                "base": gen.base_model_hash(),
                "catalog": gen.catalog.hash,
                "window": [window.start_ts, window.end_ts],
                "data": _hash_arrays(rows.c1, rows.c2, rows.c3, rows.ts),
                "previous": str(previous_adapter) if previous_adapter else None,
                "kind": kind,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def holdout_nll(self, gen: TrainableGenerator, model: Any, holdout: Examples) -> float:
        """Mean answer NLL of the held-out rows, mixing prompts with and without evidence in
        the training proportion (``rag_fraction``), so the choice serves both kinds of arm."""
        opts: LoraOptions = self.options
        was_training = model.training
        model.eval()
        parts: dict[bool, float] = {}
        size = max(opts.batch_size, 256)
        with torch.no_grad():
            for rag in (True, False):
                total = 0.0
                for lo in range(0, len(holdout), size):
                    sl = slice(lo, lo + size)
                    ev = holdout.evidence.take(np.arange(len(holdout))[sl]) if rag and holdout.evidence is not None else None
                    batch = gen.training_batch(holdout.contexts[sl], ev, holdout.ts[sl], holdout.labels[sl])
                    total += float(gen.training_loss(model, batch).sum())
                parts[rag] = total / max(1, len(holdout))
        if was_training:
            model.train()
        return opts.rag_fraction * parts[True] + (1.0 - opts.rag_fraction) * parts[False]

    def _train(
        self,
        gen: TrainableGenerator,
        model: Any,
        train: Examples,
        schedule: list[np.ndarray],
        fingerprint: str,
        out_dir: Path,
        progress: bool,
        *,
        lr: float,
        holdout: Examples | None = None,
        start_is_candidate: bool = True,
    ) -> dict[str, Any]:
        """Run ``schedule``; with ``holdout``, keep the weights of the epoch boundary (or, if
        ``start_is_candidate``, the starting point) with the lowest held-out NLL."""
        opts: LoraOptions = self.options
        params = [p for p in model.parameters() if p.requires_grad]
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=opts.weight_decay, **_fused(params))
        total = len(schedule)
        warmup = int(opts.warmup_fraction * total)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress_ = (step - warmup) / max(1, total - warmup)
            return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress_))

        ckpt_dir = out_dir / CHECKPOINTS
        start_step, tokens, loss_value = self._resume(ckpt_dir, fingerprint, model, names, optimizer)
        resumed_from = start_step if start_step > 0 else None
        if start_step == 0:
            torch.manual_seed(opts.seed)  # dropout; a resumed job restores the saved RNG state
        per_epoch = max(1, math.ceil(len(train) / opts.batch_size))
        best: dict[str, Any] | None = None
        history: list[dict[str, float]] = []

        def consider(epoch: float) -> None:
            nonlocal best
            nll = self.holdout_nll(gen, model, holdout)  # type: ignore[arg-type]
            history.append({"epoch": epoch, "nll": round(nll, 6)})
            if best is None or nll < best["nll"]:
                state = dict(model.named_parameters())
                best = {"epoch": epoch, "nll": nll,
                        "weights": {n: state[n].detach().clone() for n in names}}

        if holdout is not None and start_is_candidate and start_step == 0:
            consider(0.0)
        model.train()
        ctx = distributed.current()
        world = ctx.world_size
        train_model = ctx.wrap_model(model)  # DistributedDataParallel under a launcher, else itself
        with tqdm(total=total, initial=start_step, desc="fine-tune", unit="step",
                  disable=not progress, leave=False) as bar:
            for step in range(start_step, total):
                rows = schedule[step]
                use_rag = bool(train.rag[rows[0]])
                local = rows[ctx.shard(len(rows))] if world > 1 else rows
                evidence = train.evidence.take(local) if use_rag and train.evidence is not None else None
                batch = gen.training_batch(
                    train.contexts[local], evidence, train.ts[local], train.labels[local]
                )
                for group in optimizer.param_groups:
                    group["lr"] = lr * factor(step)
                nll = gen.training_loss(train_model, batch)
                w = torch.from_numpy(train.weights[local]).to(nll.device, dtype=nll.dtype)
                if world > 1:
                    # DDP averages gradients over ranks: normalise by the whole batch's weight and
                    # scale by the world size so the average is the full batch's gradient.
                    loss = (nll * w).sum() * (world / float(train.weights[rows].sum()))
                else:
                    loss = (nll * w).sum() / w.sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                tokens += int(batch["input_ids"].shape[1]) * len(rows)  # the whole batch, all ranks
                if world > 1:  # report the whole batch's loss, not this rank's share
                    loss_value = float(ctx.all_reduce_sum(loss.detach() / world))
                else:
                    loss_value = float(loss.detach())
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}")
                done = step + 1
                if holdout is not None and (done % per_epoch == 0 or done == total):
                    consider(round(done / per_epoch, 3))
                if done % opts.checkpoint_every == 0 and done < total:
                    if ctx.is_main:
                        self._checkpoint(ckpt_dir, fingerprint, done, tokens, loss_value, model, names, optimizer)
                    ctx.barrier()
        selection: dict[str, Any] | None = None
        if best is not None:
            with torch.no_grad():  # keep the best point's weights
                state = dict(model.named_parameters())
                for n, w in best["weights"].items():
                    state[n].copy_(w)
            selection = {"epoch": best["epoch"], "nll": round(best["nll"], 6), "history": history}
        return {
            "train_tokens": tokens,
            "final_loss": loss_value,
            "resumed_from": resumed_from,
            "selection": selection,
            "trainable_parameters": int(sum(p.numel() for p in params)),
        }

    # -- checkpoints ----------------------------------------------------------------------------

    @staticmethod
    def _checkpoint(
        folder: Path, fingerprint: str, step: int, tokens: int, loss: float,
        model: Any, names: list[str], optimizer: torch.optim.Optimizer,
    ) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f".staging-{uuid.uuid4().hex[:8]}"
        staging.mkdir()
        state = dict(model.named_parameters())
        save_file({n: state[n].detach().cpu().contiguous() for n in names}, str(staging / "trainable.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "rng": torch.get_rng_state()}, staging / "optimizer.pt")
        meta = {
            "fingerprint": fingerprint, "step": step, "tokens": tokens, "loss": loss,
            "sha256": {name: sha256_file(staging / name) for name in CHECKPOINT_FILES},
        }
        (staging / "state.json").write_text(json.dumps(meta))
        target = folder / f"step-{step:08d}"
        if target.exists():  # left by an earlier attempt that could not be resumed from
            shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        for old in folder.glob("step-*"):  # only the newest checkpoint of this job is kept
            if old != target:
                shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def _resume(
        folder: Path, fingerprint: str, model: Any, names: list[str],
        optimizer: torch.optim.Optimizer,
    ) -> tuple[int, int, float]:
        """Load the latest checkpoint of this job; returns (step, tokens, loss) or zeros."""
        if not folder.is_dir():
            return 0, 0, float("nan")
        from safetensors.torch import load_file

        for candidate in sorted(folder.glob("step-*"), reverse=True):
            meta_path = candidate / "state.json"
            if not meta_path.is_file():
                shutil.rmtree(candidate, ignore_errors=True)  # unusable: never in the way again
                continue
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError):
                shutil.rmtree(candidate, ignore_errors=True)
                continue
            if not isinstance(meta, dict) or meta.get("fingerprint") != fingerprint:
                shutil.rmtree(candidate, ignore_errors=True)
                continue
            # Checkpoints live in a staging folder that survives crashes: only files whose
            # sha256 matches state.json are read, and only as tensors (never unpickled objects).
            sums = meta.get("sha256")
            if not isinstance(sums, dict) or any(
                not (candidate / name).is_file() or sha256_file(candidate / name) != sums.get(name)
                for name in CHECKPOINT_FILES
            ):
                warnings.warn(f"fine-tune checkpoint {candidate} is damaged (its files do not match "
                              "their checksums); discarded, the job trains from an earlier point",
                              stacklevel=2)
                shutil.rmtree(candidate, ignore_errors=True)  # damaged: resume from an older one
                continue
            saved = load_file(str(candidate / "trainable.safetensors"))
            state = dict(model.named_parameters())
            if set(saved) != set(names):
                continue
            with torch.no_grad():
                for n in names:
                    state[n].copy_(saved[n].to(state[n].device, dtype=state[n].dtype))
            try:
                extra = torch.load(candidate / "optimizer.pt", weights_only=True)
            except Exception:
                shutil.rmtree(candidate, ignore_errors=True)  # not tensors only: never loaded
                continue
            optimizer.load_state_dict(extra["optimizer"])
            torch.set_rng_state(extra["rng"])
            return int(meta["step"]), int(meta["tokens"]), float(meta["loss"])
        return 0, 0, float("nan")

    # -- evaluation and saving ------------------------------------------------------------------

    def evaluate(
        self, gen: TrainableGenerator, model: Any, holdout: Examples, *, progress: bool = False
    ) -> dict[str, float]:
        """Held-out metrics of ``model``: HR@1/5, recall (HR@recall_k), their ``_rag`` variants
        (prompts with leak-free evidence), and the exact-match rate of free generation."""
        opts: LoraOptions = self.options
        k = max(5, opts.recall_k)
        metrics: dict[str, float] = {}
        for suffix, evidence in (("", None), ("_rag", holdout.evidence)):
            ranked = gen.rank(holdout.contexts, evidence, k, as_of=holdout.ts, model=model)
            hits = ranked.ids == holdout.labels[:, None]
            metrics[f"hr@1{suffix}"] = float(hits[:, :1].any(axis=1).mean())
            metrics[f"hr@5{suffix}"] = float(hits[:, :5].any(axis=1).mean())
            metrics[f"recall{suffix}"] = float(hits[:, : opts.recall_k].any(axis=1).mean())
        n = len(holdout)
        sample = np.unique(np.linspace(0, n - 1, min(n, opts.guardrail_samples)).astype(np.int64))
        texts = gen.generate(holdout.contexts[sample], None, model=model, progress=progress)
        matched = [gen.catalog.lookup_description(t) is not None for t in texts]
        metrics["exact_match_rate"] = float(np.mean(matched))
        metrics["guardrail_samples"] = float(len(sample))
        metrics["holdout_examples"] = float(n)
        return metrics

    # -- cost -----------------------------------------------------------------------------------

    def workload(self, n_transitions: int, generator: Generator) -> Workload:
        """Tokens and parameters of a fine-tune on ``n_transitions`` window transitions.

        Exact for ``balance`` ``"none"`` and ``"reweight"``; with ``"cap"`` the training tokens
        are an upper bound (capping drops rows by label counts, which a count alone cannot
        tell)."""
        opts: LoraOptions = self.options
        holdout = 1  # a window of fewer than 2 rows is refused by fine_tune; price one row
        if n_transitions >= 2:  # the same split fine_tune makes
            holdout = n_transitions - holdout_split(n_transitions, opts.holdout_fraction, opts.holdout_max)
        examples = max(0, n_transitions - holdout)
        if opts.max_examples is not None:
            examples = min(examples, opts.max_examples)
        untrained = isinstance(generator, TrainableGenerator) and not generator.base_trained
        epochs = opts.base_epochs if untrained and opts.train_base_if_untrained else opts.epochs
        steps = math.ceil(epochs * max(1, math.ceil(examples / opts.batch_size)))
        if opts.max_steps is not None:
            steps = min(steps, opts.max_steps)
        seen = min(examples * epochs, steps * opts.batch_size)
        per_example = 0.0
        params = generator.num_parameters()
        trainable = params
        samples = min(holdout, opts.guardrail_samples)
        evaluation = guardrail = 0.0
        if isinstance(generator, TrainableGenerator):
            plain = generator.prompt_tokens(with_evidence=False)
            rag = generator.prompt_tokens(with_evidence=True)
            answer = generator.answer_tokens()
            per_example = (1 - opts.rag_fraction) * plain + opts.rag_fraction * rag + answer
            # The held-out evaluation ranks every held-out example without and with evidence
            # (each ranking prices like a regeneration of that context), the guardrails generate
            # one answer freely per sample.
            evaluation = float(generator.workload(holdout, with_evidence=False).inference_tokens
                               + generator.workload(holdout, with_evidence=True).inference_tokens)
            evaluation = evaluation or holdout * (plain + rag)
            generated = getattr(generator, "generation_tokens", None)
            guardrail = samples * (plain + (float(generated()) if callable(generated) else answer + 2))
            if opts.select_epoch:
                # one held-out NLL pass (with and without evidence) per epoch boundary, plus the
                # starting point of a warm start
                checks = math.ceil(epochs) + (0 if untrained else 1)
                evaluation += checks * holdout * (plain + rag + 2 * answer)
            if not (untrained and opts.train_base_if_untrained) and opts.mode == "lora":
                hidden = int(getattr(generator.model.config, "hidden_size", 0) or 0)
                layers = int(getattr(generator.model.config, "num_hidden_layers", 0) or 0)
                trainable = 4 * layers * 2 * opts.r * hidden  # q, k, v, o: A and B
        return Workload(
            model_parameters=params,
            trainable_parameters=trainable,
            train_tokens=round(seen * per_example),
            train_epochs=float(epochs),
            transitions=n_transitions,
            guardrail_samples=samples,
            evaluation_tokens=round(evaluation),
            guardrail_tokens=round(guardrail),
            device=getattr(getattr(generator, "device", None), "type", "cpu"),
        )
