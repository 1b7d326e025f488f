"""Plugin loading: entry points one at a time, each isolated, with a listing of what failed and why.

Built-in plugins live in the top-level ``plugins/`` package and are declared as entry points of the
``dermchat`` group in pyproject.toml, exactly like a third-party plugin. Where the project is not installed
(a Hugging Face Space runs ``app.py`` from a checkout), the same modules are loaded by name instead.

Environment:
- ``DERMCHAT_PLUGINS_ALLOW`` / ``DERMCHAT_PLUGINS_DENY``: comma-separated plugin names to load / skip.
- ``DERMCHAT_STRICT_PLUGINS=1``: re-raise the first plugin error instead of listing it (for development).
- ``DERMCHAT_TRACE_PLUGINS=1``: log every hook call (pluggy's tracing).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from types import ModuleType
from typing import Any, Callable

import pluggy

from dermchat import hookspecs
from dermchat.providers import Provider
from dermchat.registry import REGISTER_HOOKS, PluginRecord, Registry, describe_exception, report_failure

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
    "study": "plugins.study",
}


def _env_list(name: str) -> set[str] | None:
    raw = os.environ.get(name, "").strip()
    return {part.strip() for part in raw.split(",") if part.strip()} if raw else None


def strict_mode() -> bool:
    return os.environ.get("DERMCHAT_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


class PluginManager:
    """Wraps a pluggy manager with isolated loading and a registry of providers."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self.registry = Registry()
        self._collected = False
        if os.environ.get("DERMCHAT_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(lambda msg: log.info("pluggy: %s", msg.rstrip()))
            self.pm.enable_tracing()
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
            self._load_one(name, module, lambda m=module: importlib.import_module(m), source=source)

    def _load_one(self, name: str, module: str, loader: Callable[[], ModuleType], *, source: str) -> None:
        record = PluginRecord(name=name, module=module, source=source)
        self.records[name] = record
        try:
            plugin = loader()
            self.pm.register(plugin, name=name)
            record.hooks = [impl.name for impl in self.pm.get_hookcallers(plugin) or []]
        except Exception as exc:  # noqa: BLE001 - one broken plugin never stops the app
            record.loaded = False
            record.errors.append(f"load failed: {describe_exception(exc)}")
            log.warning("plugin %s failed to load: %s", name, exc)
            if strict_mode():
                raise
        self._collected = False

    def register(self, plugin: object, name: str) -> None:
        """Register an in-process plugin object (tests, embedding apps); same isolation as entry points."""
        self._load_one(name, getattr(plugin, "__name__", type(plugin).__name__), lambda: plugin, source="in-process")  # type: ignore[arg-type,return-value]

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

    # -- collecting providers ------------------------------------------------------------------------------
    def collect(self) -> Registry:
        """Call every plugin's register hooks individually, recording failures per plugin (idempotent)."""
        if self._collected:
            return self.registry
        self.registry = Registry()
        self.check_pending()
        for capability, hook_name in REGISTER_HOOKS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                record = self._record_for(impl.plugin_name)

                def register(provider: Provider, _cap: str = capability, _rec: PluginRecord = record) -> None:
                    self.registry.add(_cap, provider, _rec)

                self._call_isolated(record, hook_name, impl.function, register)
        for impl in self.pm.hook.register_benchmarks.get_hookimpls():
            record = self._record_for(impl.plugin_name)

            def register_bench(name: str, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
                self.registry.benchmarks[name] = fn

            self._call_isolated(record, "register_benchmarks", impl.function, register_bench)
        self._collected = True
        return self.registry

    def _record_for(self, plugin_name: str) -> PluginRecord:
        return self.records.setdefault(plugin_name, PluginRecord(name=plugin_name, source="in-process"))

    @staticmethod
    def _call_isolated(record: PluginRecord, hook_name: str, function: Callable[..., Any], *args: Any) -> None:
        try:
            function(*args)
        except Exception as exc:  # noqa: BLE001 - isolate per plugin
            record.errors.append(f"{hook_name} failed: {describe_exception(exc)}")
            log.warning("plugin %s failed in %s: %s", record.name, hook_name, exc)
            if strict_mode():
                raise

    # -- policy hooks, each implementation isolated ----------------------------------------------------------
    def call_each(self, hook_name: str, *, fresh: Callable[[], dict[str, Any]] | None = None,
                  **kwargs: Any) -> list[Any]:
        """Call every implementation of a policy hook; a crashing plugin is recorded and skipped.

        ``fresh()`` gives arguments built anew for each implementation (copies of the turn's result), so one
        plugin cannot change what the next one sees.
        """
        results: list[Any] = []
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            record = self._record_for(impl.plugin_name)
            try:
                given = {**kwargs, **(fresh() if fresh is not None else {})}
                value = impl.function(**{name: given[name] for name in impl.argnames})
            except Exception as exc:  # noqa: BLE001
                error_id = report_failure(log, f"plugin {record.name} in {hook_name}", exc)
                record.note_error(f"{hook_name} failed ({type(exc).__name__})", error_id)
                if strict_mode():
                    raise
                continue
            if value is not None:
                results.append(value)
        return results

    def listing(self) -> dict[str, Any]:
        """What ``dermchat plugins --json`` and the Plugins tab show."""
        registry = self.collect()
        return {
            "plugins": [record.as_dict() for record in sorted(self.records.values(), key=lambda r: r.name)],
            "providers": registry.listing(),
            "benchmarks": sorted(registry.benchmarks),
        }


def _dermchat_installed() -> bool:
    try:
        importlib.metadata.distribution("dermchat")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False
