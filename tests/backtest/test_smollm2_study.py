"""The SmolLM2 CPU study (examples/studies/smollm2-quick.toml and smollm2_quick.py): the study
file validates with the reductions it documents, and the comparison's arithmetic."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from hybridrec.backtest.config import load_backtest_config

ROOT = Path(__file__).resolve().parents[2]
STUDY = ROOT / "examples" / "studies" / "smollm2-quick.toml"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("smollm2_quick", STUDY.with_name("smollm2_quick.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_file_validates_with_its_documented_reductions() -> None:
    config = load_backtest_config(STUDY)
    assert (config.end - config.start).days == 1
    assert config.llm_arms() == ["rag-once"]
    assert config.llm.generator.options["preset"] == "smollm2-135m"
    assert config.llm.generator.options["template"] == "cluster_tokens"
    assert config.llm.fine_tuner.options["max_examples"] == 320
    assert config.llm.initial_fine_tune_options == {"max_examples": 320}
    variants = _script().tiny_variants(config)
    assert variants["tiny-same"].llm.generator.options["preset"] == "tiny"
    assert variants["tiny-same"].llm.fine_tuner == config.llm.fine_tuner
    assert variants["tiny-demo"].llm.generator.options["template"] == "rerank"
    # each variant is a study the backtest can run: its arms resolve (a plain list would not)
    assert all(list(v.arms) == ["rag-once"] and v.llm_arms() == ["rag-once"] for v in variants.values())


def test_comparison_slices_and_paired_deltas() -> None:
    support = np.array([0, 0, 3, 7, 60, 60])
    a = np.array([0, -1, 4, 0, 9, 1], dtype=np.int8)  # HR@5 hits: 1 0 1 1 0 1
    b = np.array([-1, -1, 0, 0, 0, -1], dtype=np.int8)  # 0 0 1 1 1 0
    table = _script().compare({"a": a, "b": b}, support, "a", n_boot=200)
    assert table["arms"]["a"]["all"]["hr@5"] == pytest.approx(4 / 6)
    assert table["arms"]["a"]["<5"]["n"] == 3 and table["arms"]["a"]["<5"]["hr@5"] == pytest.approx(2 / 3)
    assert table["arms"]["b"]["0"]["hr@5"] == 0.0
    assert table["deltas"]["b"]["all"]["delta"] == pytest.approx(round(4 / 6 - 3 / 6, 4))
    assert table["deltas"]["b"]["<5"]["delta"] == pytest.approx(round(2 / 3 - 1 / 3, 4))
