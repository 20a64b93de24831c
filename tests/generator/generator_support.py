"""Synthetic streams with planted successor rules, and small generator/fine-tuner factories."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hybridrec_hf import HFGenerator, HFOptions
from hybridrec_lora import LoraFineTuner, LoraOptions

from hybridrec.types import UTC, ClusterCatalog, TimeWindow, TransitionSet

N_CLUSTERS = 12
START = datetime(2000, 6, 1, tzinfo=UTC)
DAY = 86400


def novel(c1: np.ndarray, c2: np.ndarray, raw: np.ndarray, n: int) -> np.ndarray:
    """``raw % n`` moved forward past ``c1`` and ``c2`` so the successor is always novel."""
    c3 = raw % n
    for _ in range(2):
        c3 = np.where((c3 == c1) | (c3 == c2), (c3 + 1) % n, c3)
    return c3


def rule_a(c1: np.ndarray, c2: np.ndarray, n: int = N_CLUSTERS) -> np.ndarray:
    return novel(c1, c2, c1 + c2, n)


def rule_b(c1: np.ndarray, c2: np.ndarray, n: int = N_CLUSTERS) -> np.ndarray:
    return novel(c1, c2, c1 + 2 * c2 + 5, n)


def stream(
    n: int,
    days: float,
    rule: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    seed: int = 0,
    n_clusters: int = N_CLUSTERS,
) -> TransitionSet:
    """``n`` transitions spread over ``days`` whose successor is ``rule(c1, c2, ts)``."""
    rng = np.random.default_rng(seed)
    c1 = rng.integers(0, n_clusters, n)
    c2 = (c1 + rng.integers(1, n_clusters, n)) % n_clusters
    start = int(START.timestamp())
    ts = np.sort(rng.integers(start, start + int(days * DAY), n))
    c3 = rule(c1, c2, ts)
    return TransitionSet(c1, c2, c3, ts, rng.integers(0, 50, n), n_clusters)


def window_of(transitions: TransitionSet) -> TimeWindow:
    return TimeWindow(start=START, end=START + timedelta(days=31))


def tiny(catalog: ClusterCatalog, **options: object) -> HFGenerator:
    # one thread: the test machine is shared, and oversubscribed torch threads stall each other
    return HFGenerator(HFOptions.model_validate({"num_threads": 1, **options}), catalog)


FAST_LORA = {"batch_size": 64, "base_epochs": 5, "holdout_max": 200}


def tuner(**options: object) -> LoraFineTuner:
    return LoraFineTuner(LoraOptions.model_validate({**FAST_LORA, **options}))


def char_tokenizer(chars: str | set[str]) -> tuple[Any, dict[str, int]]:
    """A character-level tokenizer (``<pad>`` 0, ``<eos>`` 1, ``<unk>`` 2, then ``chars``) and
    its vocabulary: every description spans many tokens, like a real pretrained model's."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, **{ch: i + 3 for i, ch in enumerate(sorted(set(chars)))}}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    return tok, vocab


def pretrained_folder(folder: Path, *, tied: bool = True, hidden: int = 32) -> Path:
    """A small randomly initialised Llama saved like a pretrained model (weights and a
    character-level tokenizer, without cluster tokens): what ``model_path`` points at."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok, vocab = char_tokenizer("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;()'-\n")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=2 * hidden, max_position_embeddings=512,
        tie_word_embeddings=tied, bos_token_id=None, eos_token_id=1, pad_token_id=0,
    ))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
