"""Settings, the vocabulary and the Spaces front matter."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dermchat.settings import PROFILES_DIR, SettingsError, load_settings
from dermchat.vocabulary import get_vocabulary

REPO = Path(__file__).resolve().parent.parent


def test_default_profile_is_offline() -> None:
    settings = load_settings(environ={})
    assert settings.profile == "offline-cpu" and settings.diagnoser == "ham-cnn"
    assert settings.provider_options("classic-quality")["threshold"] == 50


def test_env_overrides_and_env_refs(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "DERMCHAT_PROFILE": "gpu-hub",
        "DERMCHAT_REFERENCES": "ham-exemplars",
        "DERMCHAT_QUALITY": "off",
        "HF_TOKEN": "secret-token",
    }
    monkeypatch.setenv("HF_TOKEN", "secret-token")
    settings = load_settings(environ=env)
    assert settings.diagnoser == "transformers-vlm" and settings.references == ["ham-exemplars"]
    assert settings.quality is None
    assert settings.provider_options("transformers-vlm")["token"] == "secret-token"
    assert "secret-token" not in (PROFILES_DIR / "gpu-hub.yaml").read_text()


def test_bad_settings_are_rejected_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        load_settings(environ={"DERMCHAT_PROFILE": "nope"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("diagnoser: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        load_settings(bad, environ={})
    bad.write_text("diagnozer: ham-cnn\n")
    with pytest.raises(ValueError, match="diagnozer"):
        load_settings(bad, environ={})


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"DERMCHAT_PROFILE": "nope"}, r"DERMCHAT_PROFILE: unknown profile 'nope'; expected one of: .*offline-cpu"),
        ({"DERMCHAT_OPTIONS": "{bad"}, r"DERMCHAT_OPTIONS is not valid JSON .*expected an object"),
        ({"DERMCHAT_OPTIONS": "[1, 2]"}, r"DERMCHAT_OPTIONS must be a JSON object"),
        ({"DERMCHAT_CONFIG": "/nonexistent.yaml"}, r"settings file /nonexistent.yaml does not exist"),
        ({"DERMCHAT_REFERENCES_PER_CONDITION": "abc"}, r"DERMCHAT_REFERENCES_PER_CONDITION: .*valid integer.*'abc'"),
        ({"DERMCHAT_REFERENCES_PER_CONDITION": "99"}, r"DERMCHAT_REFERENCES_PER_CONDITION: .*less than or equal to 8"),
        ({"DERMCHAT_AUDIENCE": "doctor"}, r"DERMCHAT_AUDIENCE: .*'patient' or 'clinician'"),
    ],
)
def test_configuration_mistakes_raise_one_clear_error(env: dict[str, str], expected: str) -> None:
    with pytest.raises(SettingsError, match=expected) as info:
        load_settings(environ=env)
    assert "\n" not in str(info.value)  # one line for the command line and the app


def test_bad_values_in_a_file_name_the_file(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text("references_per_condition: lots\n")
    with pytest.raises(SettingsError, match=r"site.yaml: references_per_condition: .*valid integer"):
        load_settings(environ={"DERMCHAT_CONFIG": str(config)})
    with pytest.raises(SettingsError, match=r"setting reference_conditions: .*less than or equal to 5"):
        load_settings(overrides={"reference_conditions": 9}, environ={})


def test_vocabulary_maps_labels_from_every_plugin_onto_one_row() -> None:
    vocab = get_vocabulary()
    assert len(vocab) >= 40
    assert vocab.resolve("nv") == vocab.resolve("Nevus") == vocab.resolve("mole") == "melanocytic_nevus"
    assert vocab.resolve("Basal-cell carcinoma.") == "basal_cell_carcinoma"
    assert vocab.resolve("ringworm") == "tinea" and vocab.resolve("warts") == "warts"
    assert vocab.resolve("something else entirely") is None
    for code in ["nv", "mel", "bkl", "bcc", "akiec", "vasc", "df"]:
        assert vocab.from_ham_code(code) in vocab
    assert {c.id for c in vocab if c.malignant} >= {
        "melanoma",
        "basal_cell_carcinoma",
        "actinic_keratosis",
        "squamous_cell_carcinoma",
    }


def _front_matter(readme: Path) -> dict:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n"), "README.md must start with Spaces front matter"
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_readme_front_matter_matches_the_default_profile() -> None:
    front = _front_matter(REPO / "README.md")
    expected = yaml.safe_load((PROFILES_DIR / "offline-cpu.yaml").read_text())["spaces"]
    assert front == expected
    assert front["sdk"] == "gradio" and front["app_file"] == "app.py"
    import gradio

    assert front["sdk_version"] == gradio.__version__
