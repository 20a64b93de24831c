"""Every served list is checked: catalog clusters, trailing padding only, none twice, novel."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybridrec.types import list_problem

CONTEXTS = np.array([[0, 1], [2, 3]])


def test_valid_lists_pass() -> None:
    assert list_problem(CONTEXTS, np.array([[2, 3, -1], [0, 1, 4]]), 5) is None
    assert list_problem(CONTEXTS[:0], np.zeros((0, 3), dtype=np.int64), 5) is None


@pytest.mark.parametrize(
    ("ids", "fragment"),
    [
        ([[2, 2, 4], [0, 1, 4]], "context (0, 1) [2, 2, 4] repeats a cluster"),
        ([[2, 1, 4], [0, 1, 4]], "context (0, 1) [2, 1, 4] contains a cluster of its own context"),
        ([[2, 4, 9], [0, 1, 4]], "outside the catalog's 5"),
        ([[2, -1, 4], [0, 1, 4]], "has a cluster after the padding -1"),
        ([[2, 4, -7], [0, 1, 4]], "negative cluster id"),
        ([[2, 4, -1], [0, 1, 3]], "context (2, 3) [0, 1, 3] contains a cluster of its own context"),
    ],
)
def test_each_invalid_list_is_named(ids: list[list[int]], fragment: str) -> None:
    problem = list_problem(CONTEXTS, np.array(ids), 5)
    assert problem is not None and fragment in problem


@given(st.lists(st.permutations(list(range(2, 9))), min_size=1, max_size=20), st.integers(0, 7))
def test_novel_distinct_padded_lists_always_pass(perms: list[list[int]], pad: int) -> None:
    ids = np.array([p[:7] for p in perms])
    if pad:
        ids[:, -pad:] = -1
    contexts = np.tile([[0, 1]], (len(perms), 1))
    assert list_problem(contexts, ids, 9) is None
