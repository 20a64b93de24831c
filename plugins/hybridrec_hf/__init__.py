"""Built-in Generator plugin ``hf`` (transformers causal LMs) and the ``generator`` bench suite."""

from __future__ import annotations

from typing import Any

from hybridrec import hookimpl
from hybridrec_hf.generator import HFGenerator, HFOptions, answer_nll
from hybridrec_hf.template import TEMPLATE_VERSION

__all__ = ["TEMPLATE_VERSION", "HFGenerator", "HFOptions", "answer_nll"]


@hookimpl
def register_generators(register: Any) -> None:
    register(HFGenerator)


@hookimpl
def register_bench_suites(register: Any) -> None:
    from hybridrec_hf.bench import generator_suite, gpu_suite

    register("generator", generator_suite)
    register("gpu", gpu_suite)
