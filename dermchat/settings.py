"""Settings: which provider serves each capability (by id), their options, and turn policy.

Sources, later wins: built-in defaults -> a YAML profile (``spaces_config/<profile>.yaml``, or the file named
by ``DERMCHAT_CONFIG``) -> ``DERMCHAT_*`` environment variables -> explicit overrides (study arms, UI).
``{"$env": "NAME"}`` anywhere in options is replaced by that environment variable, so committed profiles
hold no secrets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from dermchat.paths import REPO_DIR
from dermchat.results import Audience

PROFILES_DIR = REPO_DIR / "spaces_config"
DEFAULT_PROFILE = "offline-cpu"


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: str = DEFAULT_PROFILE
    quality: str | None = "classic-quality"
    diagnoser: str = "ham-cnn"
    second_opinion: str | None = Field(None, description="a second diagnoser shown beside the first to clinicians")
    explainer: str | None = "kb-rag"
    references: list[str] = Field(default_factory=lambda: ["ham-exemplars"])
    audience: Audience = "patient"
    quality_gate: bool = True
    show_references: bool = True
    show_citations: bool = True
    references_per_condition: int = Field(2, ge=0, le=8)
    reference_conditions: int = Field(3, ge=0, le=5)
    max_upload_mb: float = Field(25.0, gt=0)
    max_image_pixels: int = Field(60_000_000, gt=0)
    workdir: str | None = None
    study: str | None = None
    study_database_url: str | None = Field(None, description="SQLAlchemy URL; default: a SQLite file per study")
    options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("references", mode="before")
    @classmethod
    def _split_references(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def provider_options(self, provider_id: str) -> dict[str, Any]:
        return resolve_env_refs(self.options.get(provider_id, {}))

    def chosen(self) -> dict[str, str | list[str] | None]:
        """Provider ids by capability, as configured."""
        return {
            "quality": self.quality,
            "diagnoser": self.diagnoser,
            "explainer": self.explainer,
            "references": list(self.references),
        }


def resolve_env_refs(value: Any) -> Any:
    """Replace ``{"$env": "NAME"}`` by the environment variable's value (``None`` when unset)."""
    if isinstance(value, dict):
        if set(value) == {"$env"}:
            return os.environ.get(str(value["$env"]))
        return {key: resolve_env_refs(item) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_env_refs(item) for item in value]
    return value


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def profile_path(profile: str) -> Path:
    return PROFILES_DIR / f"{profile}.yaml"


def read_profile(path: Path) -> dict[str, Any]:
    """Parse a YAML profile; errors name the file so a typo is easy to find."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings at the top level")
    data.pop("spaces", None)  # Hugging Face Spaces metadata lives beside the settings
    return data


_ENV_FIELDS = (
    "profile", "quality", "diagnoser", "second_opinion", "explainer", "references", "audience", "quality_gate",
    "show_references", "show_citations", "references_per_condition", "reference_conditions", "workdir", "study", "study_database_url",
    "max_upload_mb", "max_image_pixels",
)


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name in _ENV_FIELDS:
        raw = env.get(f"DERMCHAT_{name.upper()}")
        if raw is None:
            continue
        out[name] = None if raw.lower() in {"none", "off", ""} and name in {"quality", "explainer", "second_opinion", "study", "study_database_url"} else raw
    if env.get("DERMCHAT_OPTIONS"):
        try:
            out["options"] = json.loads(env["DERMCHAT_OPTIONS"])
        except json.JSONDecodeError as exc:
            raise ValueError(f"DERMCHAT_OPTIONS is not valid JSON: {exc}") from exc
    return out


def load_settings(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Defaults <- profile YAML <- DERMCHAT_* env <- overrides."""
    env = os.environ if environ is None else environ
    env_values = env_overrides(env)
    if path is None and env.get("DERMCHAT_CONFIG"):
        path = env["DERMCHAT_CONFIG"]
    if path is None:
        profile = str(env_values.get("profile") or (overrides or {}).get("profile") or DEFAULT_PROFILE)
        candidate = profile_path(profile)
        if not candidate.exists() and profile != DEFAULT_PROFILE:
            raise ValueError(f"unknown profile {profile!r}: no file {candidate}")
        path = candidate if candidate.exists() else None
    data: dict[str, Any] = read_profile(Path(path)) if path else {}
    data = deep_merge(data, env_values)
    data = deep_merge(data, overrides or {})
    return Settings(**data)
