"""Disk bytes of the tiny preset's adapters: the first fine-tune (which trains the base) and a
warm-started LoRA on it, with the demo's generator and fine-tuner options on ML-1M (two small
fine-tunes before the test window, about a minute on a laptop CPU).

    HF_HUB_OFFLINE=1 python research/studies/lean_adapters.py

The LoRA adapter's ``base/`` files are hard links to the first adapter's (docs/generator.md,
"Lean adapters"), so ``du`` over both folders counts the base once; the adapter alone, as a
self-contained folder, still holds everything it needs.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime
from pathlib import Path

from hybridrec_hf import HFGenerator, HFOptions
from hybridrec_lora import LoraFineTuner, LoraOptions

from hybridrec.backtest.config import DEMO_FINE_TUNE, DEMO_GENERATOR
from hybridrec.data import load_prepared
from hybridrec.types import UTC, TimeWindow


def disk_bytes(*folders: Path) -> int:
    """Bytes of the files under ``folders``, each inode counted once (what ``du`` counts)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder in folders:
        for path in folder.rglob("*"):
            st = path.stat()
            if path.is_file() and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def main() -> None:
    prepared = load_prepared("ml-1m")
    gen = HFGenerator(HFOptions(**DEMO_GENERATOR, device="cpu"), prepared.catalog)
    first_window = TimeWindow(start=datetime(2000, 5, 2, tzinfo=UTC), end=datetime(2000, 5, 20, tzinfo=UTC))
    next_window = TimeWindow(start=datetime(2000, 5, 20, tzinfo=UTC), end=datetime(2000, 6, 1, tzinfo=UTC))
    with tempfile.TemporaryDirectory() as tmp:
        first, second = Path(tmp) / "first", Path(tmp) / "second"
        LoraFineTuner(LoraOptions(**{**DEMO_FINE_TUNE, "max_examples": 2000, "base_epochs": 1})).fine_tune(
            gen, prepared.transitions, first_window, first
        )
        LoraFineTuner(LoraOptions(**{**DEMO_FINE_TUNE, "max_examples": 2000})).fine_tune(
            gen, prepared.transitions, next_window, second, previous_adapter=first
        )
        linked = all(
            os.path.samefile(p, second / "base" / p.relative_to(first / "base"))
            for p in (first / "base").rglob("*") if p.is_file()
        )
        print(f"first adapter (trains the base):     {disk_bytes(first):>9,} bytes")
        print(f"second adapter, as a folder:         {disk_bytes(second):>9,} bytes")
        print(f"  of which its LoRA matrices (lora/): {disk_bytes(second / 'lora'):>9,} bytes")
        print(f"both adapters on disk:               {disk_bytes(first, second):>9,} bytes")
        print(f"second adapter's new bytes:          {disk_bytes(first, second) - disk_bytes(first):>9,} bytes")
        print(f"base files hard-linked:              {linked}")


if __name__ == "__main__":
    main()
