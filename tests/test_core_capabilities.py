"""The capability table is the one home of a capability's names: these tests hold the rest of the code to it."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest

from dermchat import hookspecs
from dermchat.capabilities import CAPABILITIES, STEP_TITLES, Capability, capability, capability_keys
from dermchat.registry import Registry
from dermchat.results import StepName
from dermchat.settings import Settings

DOCS = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")


def test_the_table_covers_every_register_hookspec() -> None:
    """A new ``register_*`` hook is a new capability (or a benchmark): it must get a row, and a row a hookspec."""
    specs = {name for name in dir(hookspecs) if name.startswith("register_")} - {"register_benchmarks"}
    assert specs == {cap.register_hook for cap in CAPABILITIES}


@pytest.mark.parametrize("cap", CAPABILITIES, ids=lambda cap: cap.key)
def test_each_row_agrees_with_its_provider_class_settings_and_docs(cap: Capability) -> None:
    assert capability(cap.key) is cap
    assert cap.provider_class.capability == cap.key
    assert cap.key in Settings.model_fields, f"no Settings field chooses the {cap.key} provider"
    assert f"| `{cap.register_hook}(register)` | `{cap.key}` | `{cap.step}` |" in DOCS


def test_registry_keys_settings_and_step_titles_derive_from_the_table() -> None:
    assert list(Registry().providers) == capability_keys()
    assert list(Settings().chosen()) == capability_keys()
    assert set(STEP_TITLES) == set(get_args(StepName))
    assert [STEP_TITLES[cap.step] for cap in CAPABILITIES] == [cap.title for cap in CAPABILITIES]


def test_an_unknown_key_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="diagnoser, morphology"):
        capability("diagnosis")
