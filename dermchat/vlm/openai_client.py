"""A small client for OpenAI-compatible chat-completions servers (vLLM, TGI, Ollama, llama.cpp, hosted APIs).

Why not the ``openai`` package: the protocol subset needed here (one POST, optional SSE stream, ``/models``)
is a few dozen lines over httpx, and owning it keeps timeouts, retries and error wording under our control.
Retries cover what is worth retrying (429, 5xx, connection failures) with exponential backoff, and only
before any text has streamed: a half-streamed answer is never silently restarted.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import socket
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import urlparse

import httpx

from dermchat.intake import to_jpeg_bytes
from dermchat.providers import ProviderError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}
MAX_BACKOFF_S = 30.0
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


def error_detail(response: httpx.Response) -> str:
    """The server's own error message from the usual JSON shapes, or the start of the body."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message")))
        if isinstance(err, dict):
            err = err.get("message") or json.dumps(err)[:300]
        if err:
            return str(err)[:300]
    return json.dumps(body)[:300]


class OpenAIChatClient:
    """POST ``{base_url}/chat/completions`` with timeouts, bounded retries and plain-language errors."""

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
        backoff_s: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not base_url:
            raise ProviderError("no server address configured (set the provider's 'base_url' option)")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key or (os.environ.get(api_key_env) if api_key_env else None)
        self.api_key_env = api_key_env
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    # -- public calls ----------------------------------------------------------------------------------------
    def models(self) -> list[str]:
        response = self._send("GET", "/models")
        return [str(item.get("id")) for item in response.json().get("data", []) if isinstance(item, dict)]

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
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": stream,
        }
        if not stream:
            response = self._send("POST", "/chat/completions", json=payload)
            text = _message_text(response.json())
            if on_text is not None and text:
                on_text(text)
            return text
        return "".join(self._stream(payload, on_text))

    # -- transport ---------------------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"the model server at {self.base_url}"

    def _status_error(self, response: httpx.Response, attempts: int) -> ProviderError:
        status = response.status_code
        detail = error_detail(response)
        if status in {401, 403}:
            hint = f" (set the {self.api_key_env} environment variable)" if self.api_key_env else ""
            return ProviderError(f"{self._where()} rejected the API key (HTTP {status}: {detail}){hint}")
        if status == 404:
            return ProviderError(f"{self._where()} does not know model {self.model!r} or this endpoint (HTTP 404: {detail})")
        if status < 500 and status not in RETRY_STATUSES:
            return ProviderError(f"{self._where()} refused the request (HTTP {status}: {detail})")
        tries = f" after {attempts} attempt(s)" if attempts > 1 else ""
        return ProviderError(f"{self._where()} failed (HTTP {status}: {detail}){tries}")

    def _sleep_before_retry(self, attempt: int, response: httpx.Response | None) -> None:
        delay = self.backoff_s * (2**attempt) * (1.0 + 0.1 * random.random())
        if response is not None:
            retry_after = response.headers.get("retry-after", "")
            if retry_after.replace(".", "", 1).isdigit():
                delay = max(delay, float(retry_after))
        time.sleep(min(delay, MAX_BACKOFF_S))

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                response = self._client.request(method, self.base_url + path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError) as exc:
                last = exc
                if attempt < self.retries:
                    self._sleep_before_retry(attempt, None)
                    continue
                raise self._connection_error(exc, attempt + 1) from exc
            if response.status_code < 400:
                return response
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                log.info("%s answered HTTP %s; retrying", self.base_url, response.status_code)
                self._sleep_before_retry(attempt, response)
                continue
            raise self._status_error(response, attempt + 1)
        raise self._connection_error(last or RuntimeError("no attempt made"), self.retries + 1)

    def _connection_error(self, exc: Exception, attempts: int) -> ProviderError:
        kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "could not be reached"
        return ProviderError(f"{self._where()} {kind} after {attempts} attempt(s) ({type(exc).__name__})")

    def _stream(self, payload: dict[str, Any], on_text: Callable[[str], None] | None) -> Iterator[str]:
        for attempt in range(self.retries + 1):
            received = False
            try:
                with self._client.stream("POST", self.base_url + "/chat/completions", json=payload) as response:
                    if response.status_code >= 400:
                        response.read()
                        if response.status_code in RETRY_STATUSES and attempt < self.retries:
                            self._sleep_before_retry(attempt, response)
                            continue
                        raise self._status_error(response, attempt + 1)
                    for delta in _sse_deltas(response.iter_lines()):
                        received = True
                        if on_text is not None:
                            on_text(delta)
                        yield delta
                return
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout, httpx.RemoteProtocolError) as exc:
                if received:
                    raise ProviderError(f"{self._where()} stopped in the middle of its answer ({type(exc).__name__})") from exc
                if attempt < self.retries:
                    self._sleep_before_retry(attempt, None)
                    continue
                raise self._connection_error(exc, attempt + 1) from exc


def _sse_deltas(lines: Iterator[str]) -> Iterator[str]:
    """Text deltas from a chat-completions SSE stream; an ``error`` event becomes a ``ProviderError``."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = json.loads(data)
        except json.JSONDecodeError:
            continue
        if "error" in event:
            err = event["error"]
            message = err.get("message") if isinstance(err, dict) else err
            raise ProviderError(f"the model server reported an error while answering: {message}")
        for choice in event.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            text = _content_text(content)
            if text:
                yield text


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # some servers send content parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _message_text(body: dict[str, Any]) -> str:
    choices = body.get("choices") or []
    if not choices:
        raise ProviderError(f"the model server sent no answer (response had no choices: {json.dumps(body)[:200]})")
    return _content_text((choices[0].get("message") or {}).get("content"))
