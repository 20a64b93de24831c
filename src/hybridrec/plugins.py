"""The plugin manager and the registry of implementations.

Loading is lazy: nothing is imported until the first call to :func:`get_plugin_manager` or
:func:`registry`. Environment switches:

``HYBRIDREC_LOAD_PLUGINS``
    Comma-separated entry-point names (or distribution names): load only these. Empty string loads
    none.
``HYBRIDREC_DISABLE_PLUGIN_AUTOLOAD``
    Set to ``1`` to skip entry points entirely (plugins registered in code still work).
``HYBRIDREC_TRACE_HOOKS``
    Set to ``1`` to print every hook call, its arguments and its result to stderr.

A hook implementation whose name matches no hook spec is a start-up error (:class:`PluginError`),
so a typo never fails silently. A plugin whose module fails to import, or whose registration hook
raises, is recorded in :attr:`Registry.errors`, reported by name, and the others still load.

**The factory.** :func:`build` is the one way plugins are instantiated (pipelines, workspaces,
backtests, table executors, launchers): it looks a reference (``PluginRef``, a name, or a
``{"plugin": ..., "options": ...}`` mapping) up in the registry, validates its options with the
plugin's ``Options`` model (a :class:`~hybridrec.errors.ConfigError` names the role, the plugin
and the field) and passes the cluster catalog to the roles that take one (:data:`CATALOG_ROLES`).
"""

from __future__ import annotations

import importlib.metadata as md
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

import pluggy
from pydantic import BaseModel

from hybridrec import hookspecs
from hybridrec.errors import ConfigError, HybridrecError, PluginError, UnknownPluginError
from hybridrec.interfaces import (
    ROLES,
    CostModel,
    Dataset,
    FineTuner,
    Generator,
    KnowledgeStore,
    Plugin,
    TableExecutor,
    UpdatePolicy,
)
from hybridrec.plugin_refs import PLUGIN_ROLES, EvidenceConfig, PluginRef

if TYPE_CHECKING:
    from hybridrec.types import ClusterCatalog

ENTRY_POINT_GROUP = "hybridrec"
CORE_DISTRIBUTION = "hybridrec"

REGISTRATION_HOOKS: dict[str, str] = {
    "generator": "register_generators",
    "fine_tuner": "register_fine_tuners",
    "knowledge_store": "register_knowledge_stores",
    "update_policy": "register_update_policies",
    "cost_model": "register_cost_models",
    "dataset": "register_datasets",
    "executor": "register_executors",
}


@dataclass(frozen=True)
class PluginInfo:
    """One registered implementation."""

    role: str
    name: str
    cls: type[Plugin]
    plugin: str
    distribution: str | None
    version: str | None
    builtin: bool
    aliases: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "name": self.name,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "plugin": self.plugin,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "aliases": list(self.aliases),
        }


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or whose hook raised."""

    plugin: str
    stage: str
    error: str

    def __str__(self) -> str:
        return f"plugin {self.plugin!r} failed during {self.stage}: {self.error}"


@dataclass
class Registry:
    """All registered implementations, by role then name; plus failures and extra registrations."""

    by_role: dict[str, dict[str, PluginInfo]] = field(default_factory=dict)
    aliases: dict[str, dict[str, str]] = field(default_factory=dict)
    errors: list[PluginFailure] = field(default_factory=list)
    bench_suites: dict[str, Callable[..., dict[str, Any]]] = field(default_factory=dict)
    table_backends: dict[str, Any] = field(default_factory=dict)

    def names(self, role: str) -> list[str]:
        return sorted(self.by_role.get(role, {}))

    def info(self, role: str, name: str) -> PluginInfo:
        if role not in ROLES:
            raise PluginError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        entries = self.by_role.get(role, {})
        canonical = self.aliases.get(role, {}).get(name, name)
        if canonical not in entries:
            failed = [f for f in self.errors if f.plugin == name and f.stage == "import"]
            error = UnknownPluginError(role, name, list(entries), self.aliases.get(role, {}))
            if failed:  # the plugin is installed but could not load: say why, not "unknown"
                raise PluginError(f"{role} plugin {name!r} is not available: {failed[0].error}") from error
            raise error
        return entries[canonical]

    def get(self, role: str, name: str) -> type[Plugin]:
        """The implementation class registered as ``name`` for ``role``."""
        return self.info(role, name).cls

    def all(self) -> Iterator[PluginInfo]:
        for role in ROLES:
            yield from (self.by_role.get(role, {})[n] for n in self.names(role))

    def find(self, name: str, role: str | None = None) -> PluginInfo:
        """The implementation called ``name`` (or aliased so) in ``role``, or in any role when
        ``role`` is None. Raises :class:`~hybridrec.errors.UnknownPluginError` (with "did you
        mean" suggestions) when no role has it, and :class:`~hybridrec.errors.PluginError` when
        ``role`` is None and several roles have it (the message lists them)."""
        if role is not None:
            return self.info(role, name)
        matches = [r for r in ROLES if self.aliases.get(r, {}).get(name, name) in self.by_role.get(r, {})]
        if not matches:
            every = [n for r in ROLES for n in self.by_role.get(r, {})]
            aliases = [a for r in ROLES for a in self.aliases.get(r, {})]
            raise UnknownPluginError("plugin", name, every, aliases)
        if len(matches) > 1:
            raise PluginError(
                f"{name!r} names a plugin in several roles ({', '.join(matches)}); "
                "pick one with --role"
            )
        return self.info(matches[0], name)


_lock = threading.RLock()
_pm: pluggy.PluginManager | None = None
_registry: Registry | None = None
_plugin_dists: dict[str, tuple[str | None, str | None]] = {}
_load_failures: list[PluginFailure] = []


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _trace(pm: pluggy.PluginManager) -> None:
    def before(hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
        names = [i.plugin_name for i in impls]
        shown = {k: _short(v) for k, v in kwargs.items()}
        print(f"[hybridrec hook] {hook_name}({shown}) -> implementations {names}", file=sys.stderr)

    def after(
        outcome: Any, hook_name: str, impls: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> None:
        try:
            result = outcome.get_result()
        except BaseException as exc:
            print(f"[hybridrec hook] {hook_name} raised {exc!r}", file=sys.stderr)
            return
        print(f"[hybridrec hook] {hook_name} returned {_short(result)}", file=sys.stderr)

    pm.add_hookcall_monitoring(before, after)


def _short(value: Any, limit: int = 160) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _selected(ep: md.EntryPoint, wanted: set[str] | None) -> bool:
    if wanted is None:
        return True
    dist = ep.dist.name if ep.dist is not None else None
    return ep.name in wanted or (dist is not None and dist in wanted)


#: Modules of the optional extras (``pip install 'hybridrec[NAME]'``) the built-in plugins need.
EXTRAS: dict[str, str] = {"torch": "hf", "transformers": "hf", "safetensors": "hf", "peft": "lora",
                          "annoy": "annoy", "matplotlib": "report", "ray": "ray",
                          "starlette": "serve", "uvicorn": "serve"}


def _missing_extra(exc: BaseException) -> str | None:
    """Why a plugin needs an extra, when ``exc`` is the import of a module of :data:`EXTRAS`."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    root = exc.name.split(".")[0]
    extra = EXTRAS.get(root)
    if extra is None:
        return None
    return f"it needs {root!r}, which is not installed (pip install 'hybridrec[{extra}]')"


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    if _truthy(os.environ.get("HYBRIDREC_DISABLE_PLUGIN_AUTOLOAD")):
        return
    raw = os.environ.get("HYBRIDREC_LOAD_PLUGINS")
    wanted = None if raw is None else {s.strip() for s in raw.split(",") if s.strip()}
    seen: set[str] = set()
    for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen or not _selected(ep, wanted):
            continue
        seen.add(ep.name)
        if pm.has_plugin(ep.name):
            continue
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        try:
            module = ep.load()
        except Exception as exc:
            extra = _missing_extra(exc)
            if extra is not None:  # an optional extra not installed: a fact, not a warning
                _load_failures.append(PluginFailure(ep.name, "import", extra))
                continue
            failure = PluginFailure(ep.name, "import", f"{type(exc).__name__}: {exc}")
            _load_failures.append(failure)
            print(f"hybridrec: warning: {failure}", file=sys.stderr)
            continue
        pm.register(module, name=ep.name)
        _plugin_dists[ep.name] = (dist, version)


def _check_pending(pm: pluggy.PluginManager) -> None:
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"plugin {exc.plugin!r} implements a hook that hybridrec does not define: {exc}. "
            "Check the function name against `hybridrec.hookspecs` (hooks are listed by "
            "`hybridrec plugins --hooks`)."
        ) from exc


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading entry points on first use."""
    global _pm
    with _lock:
        if _pm is None:
            pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
            pm.add_hookspecs(hookspecs)
            if _truthy(os.environ.get("HYBRIDREC_TRACE_HOOKS")):
                _trace(pm)
            _load_entry_points(pm)
            _check_pending(pm)
            _pm = pm
        return _pm


def register_plugin(plugin: object, name: str | None = None) -> str:
    """Register a plugin object (module or instance with hook implementations) in code.

    Returns the name it was registered under; invalidates the cached registry. Registering an
    object that is already registered (for example an installed plugin package, which its entry
    point registered when the plugins loaded), or a name already in use, raises
    :class:`~hybridrec.errors.PluginError`.
    """
    pm = get_plugin_manager()
    with _lock:
        try:
            registered = pm.register(plugin, name=name)
        except ValueError:  # pluggy: the object or the name is already registered
            already = pm.get_name(plugin)
            if already is not None:
                why = (f"it is already registered as {already!r} (an installed package is "
                       "registered by its entry point: look its plugins up by name; in a test, "
                       "the hybridrec_plugin fixture re-registers it for that test)")
            else:
                why = f"the name {name!r} is already in use"
            raise PluginError(f"cannot register plugin {name or plugin!r}: {why}") from None
        if registered is None:
            raise PluginError(f"plugin {name or plugin!r} is already registered or blocked")
        _check_pending(pm)
        reset_registry()
        return registered


def unregister_plugin(name: str) -> None:
    """Undo :func:`register_plugin`."""
    pm = get_plugin_manager()
    with _lock:
        pm.unregister(name=name)
        reset_registry()


def reset_registry() -> None:
    """Forget the cached registry so the next :func:`registry` call re-runs registration hooks."""
    global _registry
    with _lock:
        _registry = None


def reset() -> None:
    """Forget everything (for tests that change the environment switches)."""
    global _pm, _registry
    with _lock:
        _pm = None
        _registry = None
        _plugin_dists.clear()
        _load_failures.clear()


def _dist_of(plugin_name: str, obj: Any) -> tuple[str | None, str | None]:
    if plugin_name in _plugin_dists:
        return _plugin_dists[plugin_name]
    module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
    top = str(module).split(".")[0]
    for dist_name in md.packages_distributions().get(top, []):
        try:
            return dist_name, md.version(dist_name)
        except md.PackageNotFoundError:  # pragma: no cover - broken metadata
            continue
    return None, None


def registry() -> Registry:
    """The registry of implementations (built once, after loading plugins)."""
    global _registry
    with _lock:
        if _registry is not None:
            return _registry
        pm = get_plugin_manager()
        reg = Registry(errors=list(_load_failures))
        for role, hook_name in REGISTRATION_HOOKS.items():
            reg.by_role.setdefault(role, {})
            for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
                plugin_name = impl.plugin_name
                dist, version = _dist_of(plugin_name, impl.plugin)
                register = _make_register(reg, role, plugin_name, dist, version)
                _call_one(pm, hook_name, impl, reg, register=register)
        for impl in reversed(pm.hook.register_bench_suites.get_hookimpls()):
            _call_one(pm, "register_bench_suites", impl, reg, register=_suite_register(reg, impl))
        for impl in reversed(pm.hook.register_table_backends.get_hookimpls()):
            _call_one(
                pm, "register_table_backends", impl, reg, register=_backend_register(reg, impl)
            )
        _registry = reg
        return reg


def _call_one(
    pm: pluggy.PluginManager, hook_name: str, impl: Any, reg: Registry, **kwargs: Any
) -> None:
    caller = pm.subset_hook_caller(
        hook_name, remove_plugins=[p for p in pm.get_plugins() if p is not impl.plugin]
    )
    try:
        caller(**kwargs)
    except Exception as exc:
        message = str(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {exc}"
        reg.errors.append(PluginFailure(impl.plugin_name, hook_name, message))
        print(f"hybridrec: warning: {reg.errors[-1]}", file=sys.stderr)


def _make_register(
    reg: Registry, role: str, plugin_name: str, dist: str | None, version: str | None
) -> Callable[..., None]:
    base = ROLES[role]

    def register(cls: type[Plugin], *, aliases: tuple[str, ...] | list[str] = ()) -> None:
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(
                f"{cls!r} registered as a {role} but is not a subclass of "
                f"hybridrec.interfaces.{base.__name__}"
            )
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"{cls.__qualname__} has no `name` class attribute")
        entries = reg.by_role.setdefault(role, {})
        if name in entries:
            other = entries[name]
            raise PluginError(
                f"{role} {name!r} from plugin {plugin_name!r} clashes with the one from "
                f"plugin {other.plugin!r}; rename one or restrict with HYBRIDREC_LOAD_PLUGINS"
            )
        entries[name] = PluginInfo(
            role=role,
            name=name,
            cls=cls,
            plugin=plugin_name,
            distribution=dist,
            version=version,
            builtin=dist == CORE_DISTRIBUTION,
            aliases=tuple(aliases),
        )
        for alias in aliases:
            reg.aliases.setdefault(role, {})[alias] = name

    return register


def _suite_register(reg: Registry, impl: Any) -> Callable[[str, Callable[..., Any]], None]:
    def register(name: str, fn: Callable[..., dict[str, Any]]) -> None:
        if name in reg.bench_suites:
            raise PluginError(f"bench suite {name!r} registered twice")
        reg.bench_suites[name] = fn

    return register


def _backend_register(reg: Registry, impl: Any) -> Callable[..., None]:
    def register(backend: Any) -> None:
        name = getattr(backend, "name", None)
        if not isinstance(name, str):
            raise PluginError(f"table backend {backend!r} has no `name`")
        if name in reg.table_backends:
            raise PluginError(f"table backend {name!r} registered twice")
        reg.table_backends[name] = backend

    return register


def get(role: str, name: str) -> type[Plugin]:
    """Shortcut for ``registry().get(role, name)``."""
    return registry().get(role, name)


def hook_names() -> list[str]:
    """All hook names hybridrec defines."""
    return sorted(n for n, f in vars(hookspecs).items() if hasattr(f, "hybridrec_spec"))


def hooks_of(plugin_name: str) -> list[str]:
    """The hooks that the plugin registered as ``plugin_name`` implements."""
    pm = get_plugin_manager()
    plugin = pm.get_plugin(plugin_name)
    if plugin is None:
        return []
    return sorted(c.name for c in pm.get_hookcallers(plugin) or [])



# ---------------------------------------------------------------------------------------------
# The factory
# ---------------------------------------------------------------------------------------------

#: Roles whose implementations are constructed as ``cls(options, catalog)``; every other role is
#: constructed as ``cls(options)``.
CATALOG_ROLES: frozenset[str] = frozenset({"generator", "knowledge_store"})

Reference = PluginRef | str | Mapping[str, Any]


@dataclass(frozen=True)
class ResolvedPlugin:
    """A role's implementation class with its validated options."""

    role: str
    name: str
    cls: type[Plugin]
    options: BaseModel

    def instantiate(self, catalog: ClusterCatalog | None = None) -> Any:
        """An instance; ``catalog`` is passed to the roles that take one (required there)."""
        if self.role in CATALOG_ROLES:
            if catalog is None:
                raise PluginError(
                    f"{self.role} plugin {self.name!r} is built with the cluster catalog; pass one"
                )
            return self.cls(self.options, catalog)  # type: ignore[call-arg]
        return self.cls(self.options)


def as_ref(ref: Reference) -> PluginRef:
    """``ref`` as a :class:`~hybridrec.config.PluginRef` (a name or a mapping is accepted)."""
    if isinstance(ref, PluginRef):
        return ref
    if isinstance(ref, str):
        return PluginRef(plugin=ref)
    if isinstance(ref, Mapping):
        try:
            return PluginRef.model_validate(dict(ref))
        except ValueError as exc:
            raise ConfigError(f"invalid plugin reference {dict(ref)!r}: {exc}") from None
    raise ConfigError(f"a plugin reference is a name, a mapping or a PluginRef, got {type(ref).__name__}")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def apply_evidence(recipe: EvidenceConfig, role: str, ref: PluginRef, *, strict: bool = True,
                   table: str | None = None, section: str = "[evidence]") -> PluginRef:
    """``ref`` with the options its plugin takes from the evidence ``recipe``
    (:meth:`~hybridrec.interfaces.Plugin.evidence_options`) filled in; unchanged when the plugin
    is not available here or reads no evidence. ``strict``: an option ``ref`` already sets to
    another value is an error (a ValueError naming the option under ``table``, default
    ``<role>.options``, the recipe field and ``section``, the recipe's table: a study's is
    ``[llm.evidence]``); not strict: the recipe's value replaces it (a recipe changed in code,
    applied over the options an earlier recipe filled)."""
    try:
        cls = registry().get(role, ref.plugin)
    except HybridrecError:  # unknown or not installed: resolving the role reports it
        return ref
    wanted = cls.evidence_options(recipe, dict(ref.options))
    if not wanted:
        return ref
    options = dict(ref.options)
    problems: list[str] = []
    for key, (source, value) in wanted.items():
        if strict and key in options and not _same(options[key], value):
            problems.append(
                f"{table or role + '.options'}.{key} = {options[key]!r} differs from the evidence "
                f"recipe's {source} = {getattr(recipe, source)!r}: set {source} in {section}, which "
                "the store, the fine-tuner and the generator share")
        options[key] = value
    if problems:
        raise ValueError("; ".join(problems))
    return PluginRef(plugin=ref.plugin, options=options)


def apply_recipe(recipe: EvidenceConfig, refs: Mapping[str, tuple[str, PluginRef]], *,
                 strict: bool = True, section: str = "[evidence]") -> dict[str, PluginRef]:
    """:func:`apply_evidence` over several references at once: ``refs`` maps the config table
    each came from (``generator.options``, ...) to its role and reference; the result maps the
    same tables to the references with the recipe filled in. Every conflict is in one
    ValueError."""
    out: dict[str, PluginRef] = {}
    problems: list[str] = []
    for table, (role, ref) in refs.items():
        try:
            out[table] = apply_evidence(recipe, role, ref, strict=strict, table=table, section=section)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
    return out


def resolve_plugin(
    role: str,
    ref: Reference,
    source: str = "config",
    *,
    table: str | None = None,
    origins: Mapping[tuple[str, ...], str] | None = None,
) -> ResolvedPlugin:
    """Look ``ref`` up in the registry and validate its options with the plugin's model
    (``table``: the config table the options came from, named in errors)."""
    ref = as_ref(ref)
    try:
        cls = registry().get(role, ref.plugin)
    except UnknownPluginError as exc:
        raise ConfigError(f"{source}: [{role}] {exc}") from None
    except PluginError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    options = cls.validate_options(ref.options, source=source, table=table, origins=origins)
    return ResolvedPlugin(role=role, name=ref.plugin, cls=cls, options=options)


class _Roles(Protocol):
    """What :func:`resolve` reads of a :class:`~hybridrec.config.PipelineConfig` (typed by shape:
    the config imports this module, not the other way round)."""

    fine_tuner: PluginRef
    initial_fine_tune: Any

    @property
    def origins(self) -> dict[tuple[str, ...], str]: ...


def resolve(
    config: _Roles, source: str = "config", roles: tuple[str, ...] = PLUGIN_ROLES
) -> dict[str, ResolvedPlugin]:
    """Resolve ``roles`` of ``config`` (default: every role); all problems in one
    :class:`~hybridrec.errors.ConfigError`."""
    resolved: dict[str, ResolvedPlugin] = {}
    problems: list[str] = []
    for role in roles:
        prefix = (role, "options")
        origins = {k[2:]: v for k, v in config.origins.items() if k[:2] == prefix and len(k) > 2}
        # a plugin name set by --set or the environment is reported against that, not the file
        named_by = config.origins.get((role, "plugin")) or config.origins.get((role,), source)
        try:
            resolved[role] = resolve_plugin(role, getattr(config, role), named_by, origins=origins)
        except ConfigError as exc:
            problems.append(str(exc))
    first = config.initial_fine_tune.options
    if "fine_tuner" in roles and first and "fine_tuner" in resolved:
        merged = config.initial_fine_tune.fine_tuner(config.fine_tuner)
        try:  # the options the first fine-tune runs with must validate too
            resolve_plugin("fine_tuner", merged, source, table="initial_fine_tune.options")
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))
    return resolved


@overload
def build(role: Literal["generator"], ref: Reference, catalog: ClusterCatalog | None = None, *,
          source: str = ...) -> Generator: ...
@overload
def build(role: Literal["fine_tuner"], ref: Reference, catalog: ClusterCatalog | None = None, *,
          source: str = ...) -> FineTuner: ...
@overload
def build(role: Literal["knowledge_store"], ref: Reference, catalog: ClusterCatalog | None = None, *,
          source: str = ...) -> KnowledgeStore: ...
@overload
def build(role: Literal["update_policy"], ref: Reference, catalog: ClusterCatalog | None = None, *,
          source: str = ...) -> UpdatePolicy: ...
@overload
def build(role: Literal["cost_model"], ref: Reference, catalog: ClusterCatalog | None = None, *,
          source: str = ...) -> CostModel: ...
@overload
def build(role: Literal["dataset"], ref: Reference, catalog: ClusterCatalog | None = None, *,
          source: str = ...) -> Dataset: ...
@overload
def build(role: Literal["executor"], ref: Reference, catalog: ClusterCatalog | None = None, *,
          source: str = ...) -> TableExecutor: ...
@overload
def build(role: str, ref: Reference, catalog: ClusterCatalog | None = None, *,
          source: str = ...) -> Plugin: ...
def build(role: str, ref: Reference, catalog: ClusterCatalog | None = None, *,
          source: str = "config") -> Plugin:
    """An instance of the ``role`` plugin named by ``ref``, its options validated (see the module
    docstring). ``catalog`` goes to the roles in :data:`CATALOG_ROLES` and is ignored by others."""
    instance: Plugin = resolve_plugin(role, ref, source).instantiate(catalog)
    return instance


__all__ = [
    "CATALOG_ROLES",
    "CORE_DISTRIBUTION",
    "ENTRY_POINT_GROUP",
    "PluginFailure",
    "PluginInfo",
    "Reference",
    "Registry",
    "ResolvedPlugin",
    "apply_evidence",
    "apply_recipe",
    "as_ref",
    "build",
    "get",
    "get_plugin_manager",
    "hook_names",
    "hooks_of",
    "register_plugin",
    "registry",
    "reset",
    "reset_registry",
    "resolve",
    "resolve_plugin",
    "unregister_plugin",
]
