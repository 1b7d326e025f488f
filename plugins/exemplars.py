"""Built-in plugin: real exemplar reference images (``ham-exemplars``) and their retrieval benchmark."""

from __future__ import annotations

from typing import Any, Callable

from dermchat.hookspecs import BenchFn, hookimpl
from dermchat.references.exemplars import ExemplarProvider


@hookimpl
def register_reference_generators(register: Callable[[ExemplarProvider], None]) -> None:
    register(ExemplarProvider())


@hookimpl
def register_benchmarks(register: Callable[[str, BenchFn], None]) -> None:
    def bench(options: dict[str, Any]) -> dict[str, Any]:
        from dermchat.references.bench import configured, exemplar_latency

        return exemplar_latency(configured(ExemplarProvider()), options)

    register("ham-exemplars retrieval latency", bench)
