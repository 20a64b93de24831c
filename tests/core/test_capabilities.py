"""Capabilities are declared protocols: any plugin can offer them, and they are checked with
isinstance against the protocol, not against a class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hybridrec.capabilities import PromptEncoder, TrainableGenerator, prompt_matrix
from hybridrec.errors import PluginError
from hybridrec.plugins import build
from hybridrec.testing.fakes import FakeGenerator, PromptFakeGenerator
from hybridrec.types import ClusterCatalog, TimeWindow, TransitionSet

CATALOG = ClusterCatalog.from_descriptions([f"g{i}" for i in range(6)])


def test_the_hf_generator_offers_both_capabilities() -> None:
    gen = build("generator", {"plugin": "hf", "options": {"preset": "tiny"}}, CATALOG)
    assert isinstance(gen, PromptEncoder) and isinstance(gen, TrainableGenerator)
    contexts = np.array([[0, 1], [2, 3], [0, 1]])
    rows = prompt_matrix(gen, contexts, None)
    assert rows.dtype == np.int64 and rows.flags.c_contiguous
    assert (rows[0] == rows[2]).all() and not (rows[0] == rows[1]).all()


def test_a_third_party_generator_offers_prompt_encoding_by_implementing_encode() -> None:
    assert isinstance(PromptFakeGenerator(None, CATALOG), PromptEncoder)
    assert not isinstance(FakeGenerator(None, CATALOG), PromptEncoder)
    assert not isinstance(FakeGenerator(None, CATALOG), TrainableGenerator)


def test_lora_refuses_a_generator_without_the_trainable_capability(tmp_path: Path) -> None:
    tuner = build("fine_tuner", "lora")
    ts = np.arange(10, dtype=np.int64) * 10
    rows = TransitionSet(np.zeros(10, dtype=np.int64), np.ones(10, dtype=np.int64),
                         np.full(10, 2, dtype=np.int64), ts, ts, 6)
    window = TimeWindow.model_validate({"start": "1970-01-01T00:00:00Z", "end": "1970-01-01T00:10:00Z"})
    with pytest.raises(PluginError, match="TrainableGenerator"):
        tuner.fine_tune(FakeGenerator(None, CATALOG), rows, window, tmp_path / "a")
