"""Built-in table executors: ``local`` (in-process, the default) and ``ray`` (extra ``hybridrec[ray]``)."""

from __future__ import annotations

from typing import Any

from hybridrec import hookimpl
from hybridrec_executors.local import LocalExecutor
from hybridrec_executors.ray_executor import RayExecutor


@hookimpl
def register_executors(register: Any) -> None:
    register(LocalExecutor)
    register(RayExecutor)


@hookimpl
def register_bench_suites(register: Any) -> None:
    from hybridrec.testing.faultbench import fault_suite

    register("fault", fault_suite)
    try:
        from hybridrec_executors.scale_bench import scale_suite
    except ModuleNotFoundError:  # it ranks with the hf generator: the `hf` extra is not installed
        return
    register("scale", scale_suite)
