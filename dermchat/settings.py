"""Settings: which provider serves each capability (by id), their options, and turn policy.

Sources, later wins: built-in defaults -> a YAML profile (``spaces_config/<profile>.yaml``, or the file named
by ``DERMCHAT_CONFIG``) -> ``DERMCHAT_*`` environment variables -> explicit overrides (study arms, UI).
``{"$env": "NAME"}`` anywhere in options is replaced by that environment variable, so committed profiles
hold no secrets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dermchat.capabilities import capability_keys
from dermchat.paths import REPO_DIR
from dermchat.results import Audience

PROFILES_DIR = REPO_DIR / "spaces_config"
DEFAULT_PROFILE = "offline-cpu"


class SettingsError(ValueError):
    """A configuration mistake; ``str(exc)`` is one line naming the variable or file and what it expects.

    Why its own type: the command line and the web app catch it and print that line instead of a traceback,
    while real bugs (any other exception) still show one.
    """


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: str = DEFAULT_PROFILE
    quality: str | None = "classic-quality"
    diagnoser: str = "ham-cnn"
    second_opinion: str | None = Field(None, description="a second diagnoser shown beside the first to clinicians")
    morphology: str | None = Field("classic-morphology", description="describes what the photo shows (ABCD)")
    explainer: str | None = "kb-rag"
    references: list[str] = Field(default_factory=lambda: ["ham-exemplars"])
    audience: Audience = "patient"
    quality_gate: bool = True
    show_references: bool = True
    show_citations: bool = True
    references_per_condition: int = Field(2, ge=0, le=8)
    reference_conditions: int = Field(3, ge=0, le=5)
    max_upload_mb: float = Field(25.0, gt=0)
    max_image_pixels: int = Field(200_000_000, gt=0, description="largest photo accepted (JPEGs are decoded reduced)")
    retention_minutes: float = Field(
        60.0,
        ge=10,
        description="uploads and turn folders unchanged this long are deleted; at least 10 so a slow turn keeps its folder",
    )
    concurrency: int | None = Field(
        None,
        ge=1,
        le=64,
        description="turns the web app runs at once; None: 1 on GPU profiles (one model on one GPU), 2 on CPU",
    )
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

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes (MiB, as intake's messages quote it): the one conversion every reader uses."""
        return int(self.max_upload_mb * 1024 * 1024)

    def provider_options(self, provider_id: str) -> dict[str, Any]:
        resolved: dict[str, Any] = resolve_env_refs(self.options.get(provider_id, {}))
        return resolved

    def chosen(self) -> dict[str, str | list[str] | None]:
        """Provider ids by capability, as configured (each capability's key is the field that chooses it)."""
        return {key: _copied(getattr(self, key)) for key in capability_keys()}


def _copied(choice: str | list[str] | None) -> str | list[str] | None:
    return list(choice) if isinstance(choice, list) else choice


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
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} does not exist (check DERMCHAT_CONFIG or the path given)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"settings file {path} cannot be read: {exc}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of settings at the top level")
    data.pop("spaces", None)  # Hugging Face Spaces metadata lives beside the settings
    return data


_ENV_FIELDS = (
    "profile",
    "quality",
    "diagnoser",
    "second_opinion",
    "morphology",
    "explainer",
    "references",
    "audience",
    "quality_gate",
    "show_references",
    "show_citations",
    "references_per_condition",
    "reference_conditions",
    "workdir",
    "study",
    "study_database_url",
    "max_upload_mb",
    "max_image_pixels",
    "retention_minutes",
    "concurrency",
)


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for name in _ENV_FIELDS:
        raw = env.get(f"DERMCHAT_{name.upper()}")
        if raw is None:
            continue
        out[name] = (
            None
            if raw.lower() in {"none", "off", ""}
            and name in {"quality", "explainer", "second_opinion", "morphology", "study", "study_database_url"}
            else raw
        )
    if env.get("DERMCHAT_OPTIONS"):
        try:
            out["options"] = json.loads(env["DERMCHAT_OPTIONS"])
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"DERMCHAT_OPTIONS is not valid JSON ({exc}); expected an object like "
                '{"ham-cnn": {"device": "cpu"}}'
            ) from exc
        if not isinstance(out["options"], dict):
            raise SettingsError("DERMCHAT_OPTIONS must be a JSON object of provider id -> options")
    return out


def load_settings(
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
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
            known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
            source = "DERMCHAT_PROFILE" if env_values.get("profile") else "profile"
            raise SettingsError(f"{source}: unknown profile {profile!r}; expected one of: {known}")
        path = candidate if candidate.exists() else None
    data: dict[str, Any] = read_profile(Path(path)) if path else {}
    data = deep_merge(data, env_values)
    data = deep_merge(data, overrides or {})
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise SettingsError(_explain(exc, env_values, overrides or {}, path)) from None


def _explain(
    exc: ValidationError, env_values: dict[str, Any], overrides: dict[str, Any], path: str | Path | None
) -> str:
    """One line per problem, naming where the bad value came from (variable or file) and what is expected."""
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        field_name = loc[0] if loc else "?"
        if field_name in overrides:
            where = f"setting {'.'.join(loc)}"
        elif field_name in env_values:
            where = "DERMCHAT_OPTIONS" if field_name == "options" else f"DERMCHAT_{field_name.upper()}"
        elif path:
            where = f"{path}: {'.'.join(loc)}"
        else:
            where = ".".join(loc)
        given = f" (got {error['input']!r})" if not isinstance(error.get("input"), (dict, list)) else ""
        if error["type"] == "extra_forbidden":
            problems.append(f"{where}: unknown setting {field_name!r}")
        else:
            problems.append(f"{where}: {error['msg'].lower()}{given}")
    return "invalid settings: " + "; ".join(problems)
