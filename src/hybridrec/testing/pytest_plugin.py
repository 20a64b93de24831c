"""pytest plugin shipped with hybridrec (entry point ``pytest11: hybridrec``).

Fixture ``hybridrec_plugin``::

    def test_my_store(hybridrec_plugin):
        hybridrec_plugin(my_plugin_module)          # registered for this test only
        cls = hybridrec.plugins.get("knowledge_store", "mine")

The plugin is unregistered (and the registry reset) when the test ends, even if it fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest


@pytest.fixture
def hybridrec_plugin() -> Iterator[Callable[..., str]]:
    from hybridrec import plugins

    names: list[str] = []

    def register(obj: object, name: str | None = None) -> str:
        registered = plugins.register_plugin(obj, name=name)
        names.append(registered)
        return registered

    try:
        yield register
    finally:
        for name in reversed(names):
            plugins.unregister_plugin(name)


__all__ = [
    "hybridrec_plugin",
]
