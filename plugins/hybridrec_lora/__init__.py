"""Built-in FineTuner plugin ``lora`` (peft LoRA on the ``hf`` generator)."""

from __future__ import annotations

from typing import Any

from hybridrec import hookimpl
from hybridrec_lora.evidence import trailing_top_successors
from hybridrec_lora.finetuner import LoraFineTuner, LoraOptions, balance_labels

__all__ = ["LoraFineTuner", "LoraOptions", "balance_labels", "trailing_top_successors"]


@hookimpl
def register_fine_tuners(register: Any) -> None:
    register(LoraFineTuner)
