"""pytest plugin shipped with hybridrec (entry point ``pytest11: hybridrec``).

Fixture ``hybridrec_plugin``::

    def test_my_store(hybridrec_plugin):
        hybridrec_plugin(my_plugin_module)          # registered for this test only
        cls = hybridrec.plugins.get("knowledge_store", "mine")

Contract:

* ``hybridrec_plugin(obj, name=None)`` registers ``obj`` (a module or an object with hook
  implementations) and returns the name it is registered under. It works whether or not ``obj``
  is also installed: an object that is already registered (an installed package, which its entry
  point registered) is first unregistered and then registered again under ``name`` (default: its
  current name, e.g. the entry-point name); a different object registered under ``name`` is
  unregistered for the test.
* Each test gets an isolated registry: when the test ends, even if it fails, every plugin
  registered during the test (through the fixture or :func:`hybridrec.plugins.register_plugin`,
  into a plugin manager that existed when the test started or that the fixture registered into)
  is unregistered, every plugin the test displaced is registered again under its former name,
  and the cached registry is reset. The plugin manager is the one in use at each call; a test
  that rebuilds it (``hybridrec.plugins.reset()``) gets each manager it registered into restored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest


class _Snapshots:
    """The plugins each plugin manager held before the test first touched it."""

    def __init__(self) -> None:
        self.before: dict[int, tuple[Any, list[tuple[str, object]]]] = {}

    def take(self, pm: Any) -> None:
        if id(pm) not in self.before:
            held = [(n, p) for n, p in pm.list_name_plugin() if p is not None]  # None: blocked
            self.before[id(pm)] = (pm, held)

    def restore(self) -> None:
        for pm, held in self.before.values():
            wanted = {name: plugin for name, plugin in held}
            for name, plugin in list(pm.list_name_plugin()):
                if plugin is not None and wanted.get(name) is not plugin:
                    pm.unregister(plugin=plugin, name=name)
            for name, plugin in held:
                if pm.get_plugin(name) is None and not pm.is_registered(plugin):
                    pm.register(plugin, name=name)


@pytest.fixture
def hybridrec_plugin() -> Iterator[Callable[..., str]]:
    """Register plugin objects for one test (see the module docstring for the contract)."""
    from hybridrec import plugins

    snapshots = _Snapshots()
    if plugins._pm is not None:  # an existing manager: anything the test registers is undone
        snapshots.take(plugins._pm)

    def register(obj: object, name: str | None = None) -> str:
        pm = plugins.get_plugin_manager()
        snapshots.take(pm)
        current = pm.get_name(obj)
        if current is not None:  # installed (entry point) or registered earlier: move it
            pm.unregister(plugin=obj, name=current)
            name = name or current
        if name is not None and pm.get_plugin(name) is not None:
            pm.unregister(name=name)  # another object holds the name: displaced for this test
        return plugins.register_plugin(obj, name=name)

    try:
        yield register
    finally:
        snapshots.restore()
        plugins.reset_registry()


__all__ = [
    "hybridrec_plugin",
]
