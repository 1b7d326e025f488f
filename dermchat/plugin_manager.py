"""The plugin manager: entry points loaded one at a time, hook calls through pluggy, each plugin isolated.

Built-in plugins live in the top-level ``plugins/`` package and are declared as entry points of the
``dermchat`` group in pyproject.toml, exactly like a third-party plugin. Where the project is not installed
(a Hugging Face Space runs ``app.py`` from a checkout), the same modules are loaded by name instead.

Every hook is called through pluggy (``pm.hook.<name>(...)``), so pluggy's call order (last registered first,
``tryfirst``/``trylast``) and its call monitoring apply. Pluggy stops a call at the first exception, so each
implementation is wrapped when its plugin is registered: a crash is recorded against that plugin (the Plugins
listing shows it) and the call goes on to the next plugin.

Environment:
- ``DERMCHAT_PLUGINS_ALLOW`` / ``DERMCHAT_PLUGINS_DENY``: comma-separated plugin names to load / skip.
- ``DERMCHAT_STRICT_PLUGINS=1``: re-raise the first plugin error instead of listing it (for development).
- ``DERMCHAT_TRACE_PLUGINS=1``: log every hook call (hook, plugins in call order, answers) at INFO level.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import importlib.metadata
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pluggy

from dermchat import hookspecs
from dermchat.capabilities import CAPABILITIES
from dermchat.providers import Provider
from dermchat.registry import PluginRecord, Registry, describe_exception, report_failure

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "dermchat"
# Used only when the dermchat distribution is not installed (e.g. a Space running from a checkout).
BUILTIN_PLUGINS: dict[str, str] = {
    "quality": "plugins.quality",
    "morphology": "plugins.morphology",
    "ham_classifier": "plugins.ham_classifier",
    "vlm": "plugins.vlm",
    "knowledge": "plugins.knowledge",
    "exemplars": "plugins.exemplars",
    "diffusion": "plugins.diffusion",
}


START_UP_HOOKS = frozenset({cap.register_hook for cap in CAPABILITIES} | {"register_benchmarks"})
"""Hooks called once while the app starts, with no user data: their errors are listed in full. The other hooks
see a user's turn, so their errors are listed by type and error id, the details going to the server log."""

_RUNNING_PLUGIN: contextvars.ContextVar[str | None] = contextvars.ContextVar("dermchat_running_plugin", default=None)
"""The plugin whose implementation is running: ``register`` credits a provider to it."""
_FRESH_ARGUMENTS: contextvars.ContextVar[tuple[str, Callable[[], dict[str, Any]]] | None] = contextvars.ContextVar(
    "dermchat_fresh_arguments", default=None
)
"""While ``call_each(hook, fresh=...)`` runs: the hook, and what builds its arguments anew for each implementation
(a hook an implementation calls in turn gets its arguments as given)."""


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name, "").strip()
    return {part.strip() for part in raw.split(",") if part.strip()} if raw else None


def strict_mode() -> bool:
    return os.environ.get("DERMCHAT_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


class PluginManager:
    """Wraps a pluggy manager with isolated loading, isolated hook calls and a registry of providers."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.registry = Registry()
        self._collected = False
        if os.environ.get("DERMCHAT_TRACE_PLUGINS"):
            self.pm.add_hookcall_monitoring(_trace_before, _trace_after)
        if load_entry_points:
            self.load_plugins()

    # -- loading -------------------------------------------------------------------------------------------
    def _allowed(self, name: str) -> bool:
        allow, deny = _env_list("DERMCHAT_PLUGINS_ALLOW"), _env_list("DERMCHAT_PLUGINS_DENY")
        return (allow is None or name in allow) and not (deny and name in deny)

    def load_plugins(self) -> None:
        """Load every entry point of the group (idempotent), then any built-in module no entry point named.

        The second part covers a checkout that is not installed (a Space runs ``app.py``) and an editable install
        made before a built-in plugin was added (``pip install -e .`` writes the entry points once).
        """
        try:
            entry_points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        except Exception as exc:  # noqa: BLE001 - broken metadata must not stop the app
            log.warning("could not read entry points: %s", exc)
            entry_points = []
        seen_modules: set[str] = set()
        for ep in entry_points:
            if ep.name in self.records or not self._allowed(ep.name):
                continue
            seen_modules.add(ep.value)
            self._load_one(ep.name, ep.value, ep.load, source=f"entry point ({ep.dist.name if ep.dist else '?'})")
        installed = _dermchat_installed()
        for name, module in BUILTIN_PLUGINS.items():
            if name in self.records or module in seen_modules or not self._allowed(name):
                continue
            source = "built-in module (missing from the installed entry points)" if installed else "built-in module"
            self._load_one(name, module, functools.partial(importlib.import_module, module), source=source)

    def _load_one(self, name: str, module: str, loader: Callable[[], object], *, source: str) -> None:
        record = PluginRecord(name=name, module=module, source=source)
        self.records[name] = record
        try:
            plugin = loader()
            self.pm.register(plugin, name=name)
            callers = self.pm.get_hookcallers(plugin) or []
            self._isolate_implementations(plugin, callers)
            record.hooks = [caller.name for caller in callers]
        except Exception as exc:  # one broken plugin never stops the app
            record.loaded = False
            record.errors.append(f"load failed: {describe_exception(exc)}")
            log.warning("plugin %s failed to load: %s", name, exc)
            if strict_mode():
                raise
        self._collected = False

    def register(self, plugin: object, name: str) -> None:
        """Register an in-process plugin object (tests, embedding apps); same isolation as entry points."""
        self._load_one(name, getattr(plugin, "__name__", type(plugin).__name__), lambda: plugin, source="in-process")

    def unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.records.pop(name, None)
        self.registry = Registry()
        self._collected = False

    def check_pending(self) -> list[str]:
        """Hook implementations that match no spec (usually a misspelt hook name), as readable errors."""
        problems: list[str] = []
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            problems.append(str(exc))
            plugin_name = self.pm.get_name(exc.plugin) if exc.plugin is not None else None
            if plugin_name in self.records:
                self.records[plugin_name].errors.append(f"unknown hook: {exc}")
            if strict_mode():
                raise
        return problems

    # -- isolation -----------------------------------------------------------------------------------------
    def _isolate_implementations(self, plugin: object, callers: Sequence[pluggy.HookCaller]) -> None:
        """Wrap each of ``plugin``'s hook implementations in ``_isolated`` (wrappers around the call excepted).

        pluggy reads ``HookImpl.function`` at every call (it types the attribute ``Final`` for its readers), so
        replacing it right after registration is how one implementation is isolated from the others.
        """
        for caller in callers:
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                    impl.function = self._isolated(caller.name, impl)  # type: ignore[misc]

    def _isolated(self, hook_name: str, impl: pluggy.HookImpl) -> Callable[..., Any]:
        """``impl``'s function, recording a crash against its plugin (and going on) instead of ending the call."""
        function, plugin_name, argnames = impl.function, impl.plugin_name, impl.argnames

        @functools.wraps(function)
        def isolated(*args: Any, **kwargs: Any) -> Any:
            running = _RUNNING_PLUGIN.set(plugin_name)
            try:
                return function(*_fresh_arguments(hook_name, argnames, args), **kwargs)
            except Exception as exc:  # one plugin's bug never stops the others
                self._note_failure(plugin_name, hook_name, exc)
                if strict_mode():
                    raise
                return None
            finally:
                _RUNNING_PLUGIN.reset(running)

        return isolated

    def _note_failure(self, plugin_name: str, hook_name: str, exc: Exception) -> None:
        record = self._record_for(plugin_name)
        if hook_name in START_UP_HOOKS:
            record.errors.append(f"{hook_name} failed: {describe_exception(exc)}")
            log.warning("plugin %s failed in %s: %s", plugin_name, hook_name, exc)
        else:
            error_id = report_failure(log, f"plugin {plugin_name} in {hook_name}", exc)
            record.note_error(f"{hook_name} failed ({type(exc).__name__})", error_id)

    def _record_for(self, plugin_name: str) -> PluginRecord:
        return self.records.setdefault(plugin_name, PluginRecord(name=plugin_name, source="in-process"))

    # -- collecting providers ------------------------------------------------------------------------------
    def collect(self) -> Registry:
        """Call the register hooks of the capability table and ``register_benchmarks`` once (idempotent)."""
        if self._collected:
            return self.registry
        self.registry = Registry()
        self.check_pending()
        for cap in CAPABILITIES:
            getattr(self.pm.hook, cap.register_hook)(register=functools.partial(self._add_provider, cap.key))
        self.pm.hook.register_benchmarks(register=self._add_benchmark)
        self._collected = True
        return self.registry

    def _add_provider(self, key: str, provider: Provider) -> None:
        """``register`` as a plugin's register hook receives it: the provider is credited to that plugin."""
        plugin_name = _RUNNING_PLUGIN.get()
        if plugin_name is None:
            raise RuntimeError("register() was called after the register hook returned")
        self.registry.add(key, provider, self._record_for(plugin_name))

    def _add_benchmark(self, name: str, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.registry.benchmarks[name] = fn

    # -- policy hooks ----------------------------------------------------------------------------------------
    def call_each(
        self, hook_name: str, *, fresh: Callable[[], dict[str, Any]] | None = None, **kwargs: Any
    ) -> list[Any]:
        """Call a policy hook through pluggy; the answers that are not None, a crashing plugin recorded and skipped.

        ``fresh()`` gives arguments built anew for each implementation (copies of the turn's result), so one
        plugin cannot change what the next one sees.
        """
        pending = _FRESH_ARGUMENTS.set((hook_name, fresh) if fresh is not None else None)
        try:
            return list(getattr(self.pm.hook, hook_name)(**kwargs, **(fresh() if fresh is not None else {})))
        finally:
            _FRESH_ARGUMENTS.reset(pending)

    def listing(self) -> dict[str, Any]:
        """What ``dermchat plugins --json`` and the Plugins tab show."""
        registry = self.collect()
        return {
            "plugins": [record.as_dict() for record in sorted(self.records.values(), key=lambda r: r.name)],
            "providers": registry.listing(),
            "benchmarks": sorted(registry.benchmarks),
        }


def _fresh_arguments(hook_name: str, argnames: Sequence[str], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """The call's arguments, with those ``call_each``'s ``fresh()`` builds replaced by new copies."""
    pending = _FRESH_ARGUMENTS.get()
    if pending is None or pending[0] != hook_name:
        return args
    given = pending[1]()
    return tuple(given.get(name, arg) for name, arg in zip(argnames, args))


def _trace_before(hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, object]) -> None:
    """Log a hook call: its arguments by name only (their values hold the user's photo and question), and the
    plugins it reaches in pluggy's call order (the last in the list runs first)."""
    order = ", ".join(impl.plugin_name for impl in reversed(impls)) or "no plugin"
    log.info("hook %s(%s) -> %s", hook_name, ", ".join(kwargs), order)


def _trace_after(
    outcome: pluggy.Result[object], hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, object]
) -> None:
    if outcome.exception is not None:
        log.info("hook %s raised %s", hook_name, type(outcome.exception).__name__)
        return
    answers = outcome.get_result()
    log.info("hook %s returned %d answer(s)", hook_name, len(answers) if isinstance(answers, list) else 1)


def _dermchat_installed() -> bool:
    try:
        importlib.metadata.distribution("dermchat")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False
