"""Chat completions from any OpenAI-compatible server (vLLM, TGI, Ollama, LM Studio, llama.cpp, hosted APIs).

The transport is the ``openai`` SDK: its ``base_url`` + ``api_key`` options, timeouts, bounded retries with
backoff (408/409/429/5xx and connection failures, ``Retry-After`` honoured), server-sent-event parsing and typed
errors. Retries happen only before a reply starts, so a half-streamed answer is never silently restarted. What
stays here is DermChat's side of the contract: the image as a metadata-free data URL, a quick TCP check so
``available()`` never waits on a dead server, and the SDK's exceptions turned into one plain-language
``ProviderError`` that says which server failed and what to do.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from dermchat.intake import to_jpeg_bytes
from dermchat.providers import ProviderError

if TYPE_CHECKING:
    from PIL import Image

NO_KEY = "EMPTY"
_REACHABLE_TTL_S = 30.0
_reachable_cache: dict[tuple[str, int], tuple[float, bool]] = {}


def image_data_url(image: Image.Image, quality: int = 90) -> str:
    """The image as a ``data:image/jpeg;base64,...`` URL; re-encoded with no metadata (EXIF/GPS) at all."""
    return "data:image/jpeg;base64," + base64.b64encode(to_jpeg_bytes(image, quality=quality)).decode("ascii")


def server_reachable(base_url: str, timeout_s: float = 1.5) -> bool:
    """A quick TCP connect to the server (cached briefly) so ``available()`` never waits on a dead server."""
    parsed = urlparse(base_url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    key = (host, port)
    now = time.monotonic()
    cached = _reachable_cache.get(key)
    if cached and now - cached[0] < _REACHABLE_TTL_S:
        return cached[1]
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            ok = True
    except OSError:
        ok = False
    _reachable_cache[key] = (now, ok)
    return ok


def error_detail(body: object) -> str:
    """The server's own message from the usual error shapes (OpenAI, FastAPI ``detail``, plain text)."""
    if isinstance(body, dict):
        err = body.get("message", body.get("detail", body.get("error")))
        if isinstance(err, dict):
            err = err.get("message") or json.dumps(err)[:300]
        return str(err)[:300] if err else json.dumps(body)[:300]
    return str(body or "").strip()[:300]


class OpenAIChatClient:
    """``chat()`` and ``models()`` over ``openai.OpenAI``, with errors a user can act on."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 120.0,
        connect_timeout_s: float = 10.0,
        retries: int = 2,
    ) -> None:
        import openai

        if not base_url:
            raise ProviderError("no server address configured (set the provider's 'base_url' option)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.retries = max(0, retries)
        key = api_key or (os.environ.get(api_key_env) if api_key_env else None)
        # local servers (vLLM, Ollama) need no key, but the SDK insists on one: "EMPTY", as vLLM's docs do
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=key or NO_KEY,
            timeout=openai.Timeout(timeout_s, connect=connect_timeout_s),
            max_retries=self.retries,
        )

    def close(self) -> None:
        self._client.close()

    def models(self) -> list[str]:
        with self._errors():
            return [str(item.id) for item in self._client.models.list()]

    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int = 512,
        temperature: float = 0.0,
        stream: bool = True,
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        """The assistant's reply; with ``stream`` each text delta also goes to ``on_text`` as it arrives."""
        with self._errors():
            reply = self._client.chat.completions.create(
                model=self.model,
                # plain dicts in the wire format; the SDK's TypedDict union describes the same shape per role
                messages=messages,  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                stream=stream,
            )
            if not stream:
                text = _message_text(reply)
                if on_text is not None and text:
                    on_text(text)
                return text
        return "".join(self._deltas(reply, on_text))

    def _deltas(self, stream: Any, on_text: Callable[[str], None] | None) -> Iterator[str]:
        """Text deltas as they arrive; a failure after the first one is reported as a broken-off answer."""
        import openai

        received = False
        try:
            with stream:
                for chunk in stream:
                    for choice in chunk.choices or []:
                        text = _content_text(getattr(choice.delta, "content", None))
                        if text:
                            received = True
                            if on_text is not None:
                                on_text(text)
                            yield text
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from exc
        except openai.APIError as exc:  # an "error" event inside the stream
            raise ProviderError(f"the model server reported an error while answering: {exc.message}") from exc
        except Exception as exc:  # the connection dropped while reading (the SDK does not wrap these)
            if not type(exc).__module__.startswith(("httpx", "httpcore")):
                raise
            when = "in the middle of" if received else "before"
            raise ProviderError(f"{self._where()} stopped {when} its answer ({type(exc).__name__})") from exc

    # -- errors ------------------------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"the model server at {self.base_url}"

    def _errors(self) -> Any:
        """A context manager turning the SDK's exceptions into ``ProviderError``."""
        import contextlib

        import openai

        @contextlib.contextmanager
        def translate() -> Iterator[None]:
            try:
                yield
            except openai.APIStatusError as exc:
                raise self._status_error(exc) from exc
            except openai.APIConnectionError as exc:
                kind = "timed out" if isinstance(exc, openai.APITimeoutError) else "could not be reached"
                cause = type(exc.__cause__ or exc).__name__
                raise ProviderError(f"{self._where()} {kind} after {self.retries + 1} attempt(s) ({cause})") from exc

        return translate()

    def _status_error(self, exc: Any) -> ProviderError:
        status = exc.status_code
        detail = error_detail(exc.body) or exc.response.reason_phrase
        if status in {401, 403}:
            hint = f" (set the {self.api_key_env} environment variable)" if self.api_key_env else ""
            return ProviderError(f"{self._where()} rejected the API key (HTTP {status}: {detail}){hint}")
        if status == 404:
            return ProviderError(
                f"{self._where()} does not know model {self.model!r} or this endpoint (HTTP 404: {detail})"
            )
        if status < 500 and status not in {408, 409, 429}:
            return ProviderError(f"{self._where()} refused the request (HTTP {status}: {detail})")
        tries = f" after {self.retries + 1} attempt(s)" if self.retries else ""
        return ProviderError(f"{self._where()} failed (HTTP {status}: {detail}){tries}")


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some servers send content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _message_text(reply: Any) -> str:
    if not reply.choices:
        raise ProviderError(
            f"the model server sent no answer (response had no choices: {reply.model_dump_json()[:200]})"
        )
    return _content_text(reply.choices[0].message.content)
