"""Every registered bench suite is a callable of ``quick``; the cheap ones run here in quick mode
(the others run in tests of their own: fault, gpu, parity, serve, serving's parts; generator and
scale take a minute or more each in quick mode and are run by hand: docs/results.md)."""

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
