"""Every registered bench suite is a callable of ``quick``; the ones without a test of their own
run here in quick mode (fault, gpu, parity, serve and serving's parts have their own tests), so
none can break unnoticed: data, store, generator (a few examples of each fine-tune, about 10 s)
and scale (Ray with 1 and 2 workers, about 30 s)."""

from __future__ import annotations

import inspect

import pytest

from hybridrec.plugins import registry

EXPECTED = {"data", "store", "generator", "gpu", "scale", "fault", "serving", "parity", "serve"}


def test_every_suite_is_registered_and_takes_quick() -> None:
    suites = registry().bench_suites
    assert set(suites) >= EXPECTED
    for name, suite in suites.items():
        assert "quick" in inspect.signature(suite).parameters, name


@pytest.mark.parametrize("name", ["data", "store"])
def test_the_cheap_suites_run_in_quick_mode(name: str) -> None:
    result = registry().bench_suites[name](quick=True)
    assert isinstance(result, dict) and result


def test_the_generator_suite_runs_in_quick_mode() -> None:
    result = registry().bench_suites["generator"](quick=True)
    assert result["tiny_rank_contexts_per_s"] > 0 and result["tiny_rank_rag_contexts_per_s"] > 0
    assert result["tiny_finetune_month_examples"] > 0 and result["tiny_finetune_lora_month_examples"] > 0
    assert 0.0 <= result["tiny_finetune_lora_month_hr@5"] <= 1.0


def test_the_scale_suite_runs_in_quick_mode() -> None:
    result = registry().bench_suites["scale"](quick=True)
    # Ray's tables equal the local executor's bit for bit, with one and with two workers.
    assert result["ray_tables_identical"] == 1
    assert result["ray_1worker_workers_seen"] == 1 and result["ray_2workers_workers_seen"] == 2
