"""Text generation for the explainer: a local model or an OpenAI-compatible server, behind one call.

The explanation plugin writes answers from retrieved passages; where it runs (laptop, GPU Space, a cluster
behind vLLM) is configuration, not code. Both generators load lazily on first use, are safe to share between
threads, and reuse the process-wide model cache, so MedGemma as diagnoser and as writer is loaded once.

    gen = make_text_generator("transformers", "google/medgemma-4b-it")
    gen = make_text_generator("openai", "medgemma", base_url="http://gpu-box:8000/v1")
    text = gen.generate([{"role": "user", "content": "..."}], max_new_tokens=200, on_text=print)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from dermchat.providers import ProviderError

if TYPE_CHECKING:
    from dermchat.vlm.local import LoadedModel
    from dermchat.vlm.openai_client import OpenAIChatClient

GeneratorKind = Literal["transformers", "openai"]


class TextGenerator(Protocol):
    """Chat messages (``role`` + ``content`` strings) in, the reply text out; chunks to ``on_text`` as they come."""

    def generate(
        self, messages: list[dict[str, Any]], *, max_new_tokens: int = 256, on_text: Callable[[str], None] | None = None
    ) -> str: ...

    def available(self) -> tuple[bool, str]: ...


class LocalTextGenerator:
    """A local transformers model (``text-generation``, or a VLM used for text only)."""

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        token: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        load_in_4bit: bool = False,
        temperature: float = 0.0,
    ) -> None:
        from dermchat.vlm.local import ModelSpec

        self.spec = ModelSpec(
            model=model, revision=revision, token=token, device=device, dtype=dtype, load_in_4bit=load_in_4bit
        )
        self.temperature = temperature
        self._lock = threading.Lock()
        self._loaded: LoadedModel | None = None

    def available(self) -> tuple[bool, str]:
        from dermchat.vlm.local import check_model_source

        return check_model_source(self.spec.model, self.spec.revision)

    def load(self) -> LoadedModel:
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    from dermchat.vlm.local import load_model

                    self._loaded = load_model(self.spec)
        return self._loaded

    def generate(
        self, messages: list[dict[str, Any]], *, max_new_tokens: int = 256, on_text: Callable[[str], None] | None = None
    ) -> str:
        return self.load().generate(
            messages, None, max_new_tokens=max_new_tokens, temperature=self.temperature, on_text=on_text
        )


class ServerTextGenerator:
    """An OpenAI-compatible chat-completions server."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        api_key: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 2,
        temperature: float = 0.0,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.temperature = temperature
        self._client_args: dict[str, Any] = dict(
            api_key=api_key, api_key_env=api_key_env, timeout_s=timeout_s, retries=retries
        )
        self._lock = threading.Lock()
        self._client: OpenAIChatClient | None = None

    def available(self) -> tuple[bool, str]:
        from dermchat.vlm.openai_client import server_reachable

        if not self.base_url:
            return False, "no server address configured (base_url)"
        if not server_reachable(self.base_url):
            return False, f"the model server at {self.base_url} cannot be reached"
        return True, ""

    def _get_client(self) -> OpenAIChatClient:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from dermchat.vlm.openai_client import OpenAIChatClient

                    self._client = OpenAIChatClient(self.base_url, self.model, **self._client_args)
        return self._client

    def generate(
        self, messages: list[dict[str, Any]], *, max_new_tokens: int = 256, on_text: Callable[[str], None] | None = None
    ) -> str:
        return self._get_client().chat(
            messages,
            max_tokens=max_new_tokens,
            temperature=self.temperature,
            stream=on_text is not None,
            on_text=on_text,
        )


_LOCAL_OPTIONS = {"revision", "token", "device", "dtype", "load_in_4bit", "temperature"}
_SERVER_OPTIONS = {"base_url", "api_key_env", "api_key", "timeout_s", "retries", "temperature"}


def make_text_generator(kind: GeneratorKind, model: str, **options: Any) -> TextGenerator:
    """A generator of ``kind`` for ``model``; unknown options are an error naming the allowed ones."""
    if not model:
        raise ProviderError("no text-generation model configured")
    if kind == "transformers":
        _check_options(kind, options, _LOCAL_OPTIONS)
        return LocalTextGenerator(model, **options)
    if kind == "openai":
        _check_options(kind, options, _SERVER_OPTIONS)
        if not options.get("base_url"):
            raise ProviderError("the openai text generator needs a base_url (e.g. http://127.0.0.1:8000/v1)")
        return ServerTextGenerator(model, **options)
    raise ValueError(f"unknown text generator kind {kind!r} (use 'transformers' or 'openai')")


def _check_options(kind: str, options: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(
            f"unknown option(s) for the {kind} text generator: {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
