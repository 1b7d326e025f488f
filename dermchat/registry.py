"""The registry of providers, filled by the ``register_*`` hooks, and the per-plugin failure record.

Pluggy stops a hook call at the first exception, so the plugin manager (``dermchat.plugin_manager``) wraps each
plugin's implementation: a plugin that crashes while registering is listed here with its error and the others
still register. The capabilities and their keys come from the capability table (``dermchat.capabilities``).
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dermchat import capabilities
from dermchat.providers import Provider

log = logging.getLogger(__name__)
MAX_ERRORS = 20  # per plugin in the listing: a plugin failing on every turn must not grow it without bound


@dataclass
class PluginRecord:
    """One plugin as the listing shows it: where it came from, what it registered, and what went wrong."""

    name: str
    module: str = ""
    source: str = "entry point"
    loaded: bool = True
    providers: list[str] = field(default_factory=list)
    hooks: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _repeats: dict[str, int] = field(default_factory=dict, repr=False)

    def note_error(self, message: str, error_id: str) -> None:
        """A failure while the app runs: listed once with a count and the last error id, at most ``MAX_ERRORS``."""
        count = self._repeats.pop(message, 0) + 1
        self._repeats[message] = count
        line = (
            f"{message} (error id {error_id})"
            if count == 1
            else (f"{message} ({count} times, last error id {error_id})")
        )
        self.errors = [e for e in self.errors if not e.startswith(f"{message} (")] + [line]
        while len(self.errors) > MAX_ERRORS:
            dropped = self.errors.pop(0)
            self._repeats = {m: c for m, c in self._repeats.items() if not dropped.startswith(f"{m} (")}

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "source": self.source,
            "loaded": self.loaded,
            "hooks": self.hooks,
            "providers": self.providers,
            "errors": self.errors,
        }


def describe_exception(exc: BaseException) -> str:
    """One line for the listing: type, message and the innermost frame."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"


def report_failure(logger: logging.Logger, what: str, exc: BaseException) -> str:
    """Log a failure in full (message, traceback) under a new error id and return the id.

    Exception text can hold file paths, URLs with tokens or user data: API clients, the Plugins tab and stored
    study events get a short, stable message with this id, and the server log the details.
    """
    error_id = uuid.uuid4().hex[:8]
    logger.warning("%s failed [error id %s]: %s", what, error_id, describe_exception(exc), exc_info=exc)
    return error_id


class Registry:
    """Providers by capability and id, plus benchmarks, for one plugin manager."""

    def __init__(self) -> None:
        self.providers: dict[str, dict[str, Provider]] = {key: {} for key in capabilities.capability_keys()}
        self.owners: dict[str, str] = {}
        self.benchmarks: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}

    def add(self, key: str, provider: Provider, plugin: PluginRecord) -> None:
        expected = capabilities.capability(key).provider_class
        if not isinstance(provider, expected):
            raise TypeError(f"{type(provider).__name__} is not a {expected.__name__}")
        if not provider.id:
            raise ValueError(f"{type(provider).__name__} has no id")
        existing = self.providers[key].get(provider.id)
        if existing is not None and existing is not provider:
            raise ValueError(f"provider id {provider.id!r} already registered by plugin {self.owners[provider.id]!r}")
        self.providers[key][provider.id] = provider
        self.owners[provider.id] = plugin.name
        plugin.providers.append(f"{key}:{provider.id}")

    def get(self, capability: str, provider_id: str) -> Provider:
        try:
            return self.providers[capability][provider_id]
        except KeyError:
            known = ", ".join(sorted(self.providers.get(capability, {}))) or "none"
            raise KeyError(f"no {capability} provider with id {provider_id!r} (registered: {known})") from None

    def find(self, provider_id: str) -> Provider | None:
        for by_id in self.providers.values():
            if provider_id in by_id:
                return by_id[provider_id]
        return None

    def listing(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for cap, by_id in self.providers.items():
            out[cap] = [dict(p.info(), plugin=self.owners.get(pid, "")) for pid, p in sorted(by_id.items())]
        return out
