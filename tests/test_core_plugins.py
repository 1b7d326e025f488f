"""The plugin manager: one test per hook, isolation of broken plugins, allow/deny lists, strict mode."""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from core_helpers import fake_app, solid_image
from fake_plugins import FakeDiagnoser, FakeExplainer, FakeQuality, FakeReferences

from dermchat.hookspecs import hookimpl
from dermchat.plugin_manager import PluginManager
from dermchat.providers import Diagnoser, Explainer, QualityChecker, ReferenceGenerator
from dermchat.request import TurnRequest
from plugins.morphology import ClassicMorphology


def _manager_with(plugin: object, name: str = "inline") -> PluginManager:
    pm = PluginManager(load_entry_points=False)
    pm.register(plugin, name)
    return pm


@pytest.mark.parametrize(
    "hook, provider_cls, capability",
    [
        ("register_quality_checks", FakeQuality, "quality"),
        ("register_diagnosers", FakeDiagnoser, "diagnoser"),
        ("register_explainers", FakeExplainer, "explainer"),
        ("register_reference_generators", FakeReferences, "references"),
        ("register_morphology_describers", ClassicMorphology, "morphology"),
    ],
)
def test_register_hooks_add_providers_by_id(hook: str, provider_cls: type, capability: str) -> None:
    plugin = type("Inline", (), {hook: hookimpl(lambda self, register: register(provider_cls()))})()
    pm = _manager_with(plugin)
    try:
        provider = pm.collect().get(capability, provider_cls.id)
        assert isinstance(provider, provider_cls)
        assert pm.records["inline"].providers == [f"{capability}:{provider_cls.id}"]
        listed = pm.listing()["providers"][capability]
        assert listed[0]["id"] == provider_cls.id and listed[0]["available"] is True
    finally:
        pm.unregister("inline")
    assert "inline" not in pm.records


def test_register_benchmarks() -> None:
    class Plugin:
        @hookimpl
        def register_benchmarks(self, register: Any) -> None:
            register("answer", lambda options: {"value": options["runs"] * 2})

    pm = _manager_with(Plugin())
    assert pm.collect().benchmarks["answer"]({"runs": 21}) == {"value": 42}


def test_extra_notices_and_turn_completed_hooks(tmp_path: Path) -> None:
    calls: list[str] = []

    class Plugin:
        @hookimpl
        def extra_notices(self, result: Any, audience: str) -> list[str]:
            return ["extra"]

        @hookimpl
        def turn_completed(self, result: Any, context: Any) -> None:
            calls.append(result.status)

    app = fake_app(tmp_path, [(Plugin(), "policy")])
    result = app.run_turn_sync(TurnRequest(image=solid_image(tmp_path / "a.png", (200, 160, 140))))
    assert "extra" in result.notices and calls == ["ok"]


HOOKS = sorted(name for name in dir(PluginManager(load_entry_points=False).pm.hook) if not name.startswith("_"))
DOCS = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text(encoding="utf-8")
TEST_SOURCES = {path.name: path.read_text(encoding="utf-8") for path in Path(__file__).parent.glob("test_*.py")}


def test_the_hooks_were_found() -> None:
    assert "register_diagnosers" in HOOKS and "turn_completed" in HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented(hook: str) -> None:
    """Meta-test (datasette-style): a new hook must be described in docs/plugins.md, with its arguments."""
    assert f"`{hook}(" in DOCS, f"hook {hook} is not documented in docs/plugins.md"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook: str) -> None:
    """Meta-test (datasette-style): a new hook must come with a test that implements or names it."""
    mentions = [name for name, source in TEST_SOURCES.items() if f"def {hook}(" in source or f'"{hook}"' in source]
    assert mentions, f"hook {hook} has no test"


def test_plugin_failing_at_registration_is_listed_and_others_still_work(tmp_path: Path) -> None:
    class Broken:
        @hookimpl
        def register_diagnosers(self, register: Any) -> None:
            raise RuntimeError("weights corrupt")

    app = fake_app(tmp_path, [(Broken(), "broken")])
    listing = app.plugins.listing()
    broken = next(p for p in listing["plugins"] if p["name"] == "broken")
    assert any("weights corrupt" in e for e in broken["errors"])
    assert app.run_turn_sync(TurnRequest(image=solid_image(tmp_path / "a.png", (200, 160, 140)))).status == "ok"


def test_plugin_failing_at_call_is_isolated(tmp_path: Path) -> None:
    class Crashy(QualityChecker):
        id = "crashy-quality"
        label = "crashes when called"

        def check(self, ctx: Any) -> Any:
            raise MemoryError("out of memory")

    class Plugin:
        @hookimpl
        def register_quality_checks(self, register: Any) -> None:
            register(Crashy())

    app = fake_app(tmp_path, [(Plugin(), "crashy")], quality="crashy-quality")
    result = app.run_turn_sync(TurnRequest(image=solid_image(tmp_path / "a.png", (200, 160, 140))))
    assert result.status == "ok" and result.diagnosis is not None
    assert result.errors[0].step == "quality" and "(MemoryError) (error id" in result.errors[0].message


def test_unavailable_provider_is_listed_with_its_reason_and_crashing_availability_too() -> None:
    class NoWeights(Diagnoser):
        id = "no-weights"
        label = "needs weights"

        def available(self) -> tuple[bool, str]:
            return False, "weights not found at /nowhere"

    class BadCheck(ReferenceGenerator):
        id = "bad-check"
        label = "availability crashes"

        def available(self) -> tuple[bool, str]:
            raise OSError("permission denied")

    class Plugin:
        @hookimpl
        def register_diagnosers(self, register: Any) -> None:
            register(NoWeights())

        @hookimpl
        def register_reference_generators(self, register: Any) -> None:
            register(BadCheck())

    listing = _manager_with(Plugin()).listing()["providers"]
    assert listing["diagnoser"][0]["reason"] == "weights not found at /nowhere"
    assert "permission denied" in listing["references"][0]["reason"]


def test_duplicate_ids_and_wrong_types_are_rejected_per_plugin() -> None:
    class Dup:
        @hookimpl
        def register_explainers(self, register: Any) -> None:
            register(FakeExplainer())
            register(FakeExplainer())  # a second instance under the same id

    class WrongType:
        @hookimpl
        def register_explainers(self, register: Any) -> None:
            register(FakeQuality())

    pm = PluginManager(load_entry_points=False)
    pm.register(Dup(), "dup")
    pm.register(WrongType(), "wrong")
    pm.collect()
    assert any("already registered" in e for e in pm.records["dup"].errors)
    assert any("is not a Explainer" in e for e in pm.records["wrong"].errors)


def test_policy_hooks_run_through_pluggy_in_its_order_and_a_crash_skips_only_that_plugin(tmp_path: Path) -> None:
    """Each implementation is wrapped: pluggy's order holds (last registered first, ``tryfirst`` before all) and
    a plugin that raises is listed while the plugins after it in the call still add their notices."""
    order: list[str] = []

    def notices_from(name: str, *, crash: bool = False, **marks: bool) -> object:
        def extra_notices(result: Any, audience: str) -> list[str]:
            order.append(name)
            if crash:
                raise RuntimeError("notice service down")
            return [f"notice from {name}"]

        return type(name, (), {"extra_notices": staticmethod(hookimpl(**marks)(extra_notices))})()

    plugins = [
        (notices_from("early", tryfirst=True), "early"),
        (notices_from("late"), "late"),
        (notices_from("broken", crash=True), "broken"),
    ]
    app = fake_app(tmp_path, plugins)
    result = app.run_turn_sync(TurnRequest(image=solid_image(tmp_path / "a.png", (200, 160, 140))))
    assert order == ["early", "broken", "late"]
    assert "notice from early" in result.notices and "notice from late" in result.notices
    assert any("extra_notices failed (RuntimeError) (error id" in e for e in app.plugins.records["broken"].errors)
    assert app.plugins.records["late"].errors == []


def test_each_implementation_gets_its_own_copy_of_the_result() -> None:
    seen: list[list[str]] = []

    class Mutating:
        @hookimpl
        def extra_notices(self, result: Any, audience: str) -> None:
            seen.append(list(result))
            result.append("changed")

    pm = PluginManager(load_entry_points=False)
    pm.register(Mutating(), "one")
    pm.register(Mutating(), "two")
    pm.call_each("extra_notices", audience="patient", fresh=lambda: {"result": ["original"]})
    assert seen == [["original"], ["original"]]


def test_tracing_logs_every_hook_call_without_argument_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Policy:
        @hookimpl
        def extra_notices(self, result: Any, audience: str) -> list[str]:
            return ["extra"]

    monkeypatch.setenv("DERMCHAT_TRACE_PLUGINS", "1")
    caplog.set_level(logging.INFO, logger="dermchat.plugin_manager")
    app = fake_app(tmp_path, [(Policy(), "policy")])
    app.run_turn_sync(
        TurnRequest(image=solid_image(tmp_path / "a.png", (200, 160, 140)), question="is this SECRET-QUESTION serious?")
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "dermchat.plugin_manager"]
    assert "hook register_diagnosers(register) -> fakes" in lines
    assert "hook extra_notices(audience, result) -> policy" in lines
    assert "hook extra_notices returned 1 answer(s)" in lines
    assert "hook turn_completed(result, context) -> no plugin" in lines
    assert not any("SECRET-QUESTION" in line for line in lines)


def test_without_tracing_hook_calls_are_not_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("DERMCHAT_TRACE_PLUGINS", raising=False)
    caplog.set_level(logging.INFO, logger="dermchat.plugin_manager")
    fake_app(tmp_path).plugins.collect()
    assert not [r for r in caplog.records if r.getMessage().startswith("hook ")]


def test_register_kept_for_later_is_refused() -> None:
    """A provider is credited to the plugin whose register hook is running; after the hook there is none."""
    kept: list[Any] = []

    class Hoarder:
        @hookimpl
        def register_explainers(self, register: Any) -> None:
            kept.append(register)

    pm = _manager_with(Hoarder(), "hoarder")
    pm.collect()
    with pytest.raises(RuntimeError, match="after the register hook returned"):
        kept[0](FakeExplainer())


def test_misspelt_hook_is_reported_by_check_pending() -> None:
    class Typo:
        @hookimpl
        def register_diagnoser(self, register: Any) -> None:  # missing "s"
            pass

    pm = _manager_with(Typo(), "typo")
    assert pm.check_pending()
    assert any("unknown hook" in e for e in pm.records["typo"].errors)


def test_strict_mode_reraises(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        @hookimpl
        def register_diagnosers(self, register: Any) -> None:
            raise RuntimeError("boom")

    monkeypatch.setenv("DERMCHAT_STRICT_PLUGINS", "1")
    pm = _manager_with(Broken())
    with pytest.raises(RuntimeError, match="boom"):
        pm.collect()


def test_providers_load_lazily_once_even_from_many_threads() -> None:
    import threading

    class Slow(Explainer):
        id = "slow"
        label = "slow loader"
        loads = 0

        def _load(self) -> None:
            import time

            time.sleep(0.05)
            type(self).loads += 1

    provider = Slow()
    assert not provider.loaded
    threads = [threading.Thread(target=provider.load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Slow.loads == 1 and provider.loaded


def test_invalid_provider_options_are_reported(tmp_path: Path) -> None:
    app = fake_app(tmp_path, options={"fake-quality": {"threshold": "high"}})
    assert any("fake-quality" in e and "threshold" in e for e in app.configuration_errors)


def test_options_for_an_unknown_provider_are_reported(tmp_path: Path) -> None:
    app = fake_app(tmp_path, options={"fake-qualty": {"threshold": 10}, "fake-dx": {}})
    assert app.configuration_errors == [
        "options were given for 'fake-qualty', but no loaded plugin provides it "
        "(known: fake-dx, fake-explainer, fake-quality, fake-refs)"
    ]


EXAMPLE_PLUGIN = Path(__file__).parent / "example_plugin"


@pytest.fixture()
def installed_example_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install tests/example_plugin into a temp site dir (a real wheel install), visible via sys.path."""
    import subprocess

    target = tmp_path / "site"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(EXAMPLE_PLUGIN),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip could not install the example plugin:\n{proc.stderr[-2000:]}")
    monkeypatch.syspath_prepend(str(target))
    import importlib

    importlib.invalidate_caches()
    yield target
    sys.modules.pop("dermchat_example_plugin", None)


def test_example_plugin_package_is_found_by_entry_point(
    installed_example_plugin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pm = PluginManager()
    record = pm.records.get("example")
    assert record is not None and record.loaded, pm.records
    assert record.source == "entry point (dermchat-example-plugin)"
    provider = pm.collect().get("explainer", "echo-explainer")
    assert provider.label.startswith("Echo")
    monkeypatch.setenv("DERMCHAT_PLUGINS_DENY", "example")
    assert "example" not in PluginManager().records
    monkeypatch.setenv("DERMCHAT_PLUGINS_ALLOW", "example")
    monkeypatch.delenv("DERMCHAT_PLUGINS_DENY")
    assert set(PluginManager().records) == {"example"}


def test_broken_entry_point_is_listed_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution whose entry point module raises on import: listed with the error, the rest load."""
    site = tmp_path / "site"
    dist = site / "broken_dermchat_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-dermchat-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[dermchat]\nbroken = broken_dermchat_plugin\n")
    (site / "broken_dermchat_plugin.py").write_text(
        textwrap.dedent("""
        raise ImportError("needs a library that is not installed")
    """)
    )
    good = site / "good_dermchat_plugin-1.0.dist-info"
    good.mkdir()
    (good / "METADATA").write_text("Metadata-Version: 2.1\nName: good-dermchat-plugin\nVersion: 1.0\n")
    (good / "entry_points.txt").write_text("[dermchat]\ngood = good_dermchat_plugin\n")
    (site / "good_dermchat_plugin.py").write_text(
        textwrap.dedent("""
        from dermchat.hookspecs import hookimpl

        @hookimpl
        def register_benchmarks(register):
            register("good", lambda options: {"ok": True})
    """)
    )
    monkeypatch.syspath_prepend(str(site))
    pm = PluginManager()
    assert not pm.records["broken"].loaded
    assert "needs a library that is not installed" in pm.records["broken"].errors[0]
    assert pm.records["good"].loaded and pm.collect().benchmarks["good"]({}) == {"ok": True}
    sys.modules.pop("good_dermchat_plugin", None)


def test_builtin_plugins_load_by_module_when_the_project_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Space runs app.py from a checkout without `pip install -e .`: the built-ins must still load."""
    import importlib.metadata

    from dermchat import plugin_manager as plugins_module

    monkeypatch.setattr(plugins_module, "_dermchat_installed", lambda: False)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: [])
    pm = PluginManager()
    assert set(pm.records) == set(plugins_module.BUILTIN_PLUGINS)
    assert all(r.source == "built-in module" and r.loaded for r in pm.records.values()), pm.records
    assert "kb-rag" in pm.collect().providers["explainer"]


def test_a_builtin_plugin_added_after_an_editable_install_still_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """`pip install -e .` writes the entry points once: a built-in added later must not silently go missing."""
    import importlib.metadata

    from dermchat import plugin_manager as plugins_module

    stale = [ep for ep in importlib.metadata.entry_points(group="dermchat") if ep.name != "morphology"]
    monkeypatch.setattr(plugins_module, "_dermchat_installed", lambda: True)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kwargs: stale)
    pm = PluginManager()
    assert (
        pm.records["morphology"].loaded and "missing from the installed entry points" in pm.records["morphology"].source
    )
    assert "classic-morphology" in pm.collect().providers["morphology"]
