"""``python -m dermchat serve-openai``: serve a local transformers model through the chat-completions protocol.

Why it exists: the app scales past one machine by talking to model servers; this is the smallest real one,
so a GPU box (or a test) can serve MedGemma — or a tiny random model — to any number of DermChat front ends
with the same client the app uses for vLLM or Ollama. Standard library HTTP only; one generation at a time
per model (the lock lives in ``LoadedModel``), many connections at once.

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions`` (``stream`` true or false), ``GET /health``.
Images arrive as ``data:`` URLs only (a server that fetches arbitrary URLs is a liability) and go through the
same decoder as uploads (size limits, EXIF dropped). Request logs name the method and path, never the client.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import logging
import os
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from dermchat.intake import ImageInputError, decode_image
from dermchat.providers import ProviderError
from dermchat.vlm.local import LoadedModel, ModelSpec, load_model

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_TOKENS = 512


class RequestError(Exception):
    """A client mistake: becomes an OpenAI-style error body with this status."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind


def decode_data_url(url: str) -> Image.Image:
    """``data:image/...;base64,...`` -> a clean RGB image (the same checks as an upload)."""
    if not url.startswith("data:"):
        raise RequestError(400, "only data: image URLs are supported by this server (no remote fetching)")
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise RequestError(400, "image data URLs must be base64-encoded")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, f"the image data URL is not valid base64 ({exc})") from exc
    try:
        return decode_image(raw).image
    except ImageInputError as exc:
        raise RequestError(400, f"the image could not be used: {exc}") from exc


def convert_messages(raw: Any) -> tuple[list[dict[str, Any]], list[Image.Image]]:
    """OpenAI messages -> Hugging Face content lists plus the images, in order."""
    if not isinstance(raw, list) or not raw:
        raise RequestError(400, "'messages' must be a non-empty list")
    messages: list[dict[str, Any]] = []
    images: list[Image.Image] = []
    for index, message in enumerate(raw):
        if not isinstance(message, dict) or message.get("role") not in {"system", "user", "assistant"}:
            raise RequestError(400, f"messages[{index}] needs a role of system, user or assistant")
        content = message.get("content")
        if isinstance(content, str):
            messages.append({"role": message["role"], "content": [{"type": "text", "text": content}]})
            continue
        if not isinstance(content, list):
            raise RequestError(400, f"messages[{index}].content must be a string or a list of parts")
        items: list[dict[str, Any]] = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                items.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind == "image_url":
                image_url = part.get("image_url")
                url = image_url.get("url") if isinstance(image_url, dict) else image_url
                images.append(decode_data_url(str(url or "")))
                items.append({"type": "image"})
            else:
                raise RequestError(400, f"messages[{index}] has an unsupported content part type {kind!r}")
        messages.append({"role": message["role"], "content": items})
    return messages, images


class ChatServer(ThreadingHTTPServer):
    """Holds the loaded model and the serving options for the handler threads."""

    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], model: LoadedModel, served_name: str, api_key: str | None, max_tokens_cap: int
    ) -> None:
        super().__init__(address, ChatHandler)
        self.model = model
        self.served_name = served_name
        self.api_key = api_key
        self.max_tokens_cap = max_tokens_cap

    def handle_error(self, request: Any, client_address: Any) -> None:
        """The base class prints the client's address with the traceback; log the error without it."""
        # socketserver calls this from inside its `except`, so the traceback is there to log
        log.exception("error while handling a request")  # noqa: LOG004


class ChatHandler(BaseHTTPRequestHandler):
    server: ChatServer
    protocol_version = "HTTP/1.1"

    # -- plumbing -----------------------------------------------------------------------------------------------
    def log_message(self, format: str, *args: Any) -> None:
        """Method, path and status only: never the client address (privacy)."""
        log.info("%s", format % args)

    def _send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error_json(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self.close_connection = True  # the request body may be unread: do not reuse this connection
        self._send_json(status, {"error": {"message": message, "type": kind, "code": status}})

    def _authorised(self) -> bool:
        if not self.server.api_key:
            return True
        return self.headers.get("Authorization", "") == f"Bearer {self.server.api_key}"

    def _read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length <= 0:
            raise RequestError(400, "the request has no JSON body")
        if length > MAX_BODY_BYTES:
            raise RequestError(413, f"the request body is larger than {MAX_BODY_BYTES // (1024 * 1024)} MB")
        try:
            body = json.loads(self.rfile.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"the request body is not valid JSON ({exc})") from exc
        if not isinstance(body, dict):
            raise RequestError(400, "the request body must be a JSON object")
        return body

    # -- routes -------------------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/health":
            self._send_json(200, {"status": "ok", "model": self.server.served_name})
        elif not self._authorised():
            self._send_error_json(401, "invalid or missing API key", "authentication_error")
        elif path == "/v1/models":
            created = int(time.time())
            self._send_json(
                200,
                {
                    "object": "list",
                    "data": [
                        {"id": self.server.served_name, "object": "model", "created": created, "owned_by": "dermchat"}
                    ],
                },
            )
        else:
            self._send_error_json(404, f"no route {path}", "not_found_error")

    def do_POST(self) -> None:
        try:
            self._post()
        except (BrokenPipeError, ConnectionResetError):
            log.info("the client went away before the answer was complete")
            self.close_connection = True

    def _post(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path != "/v1/chat/completions":
            self._send_error_json(404, f"no route {path}", "not_found_error")
            return
        if not self._authorised():
            self._send_error_json(401, "invalid or missing API key", "authentication_error")
            return
        try:
            body = self._read_json()
            request = self._validate(body)
        except RequestError as exc:
            self._send_error_json(exc.status, str(exc), exc.kind)
            return
        if request["stream"]:
            self._stream_completion(request)
        else:
            self._complete(request)

    def _validate(self, body: dict[str, Any]) -> dict[str, Any]:
        model_name = body.get("model")
        if model_name not in (None, "", self.server.served_name):
            raise RequestError(
                404,
                f"model {model_name!r} is not served here (this server has {self.server.served_name!r})",
                "not_found_error",
            )
        messages, images = convert_messages(body.get("messages"))
        if images and not self.server.model.accepts_images:
            raise RequestError(400, f"model {self.server.served_name!r} is text-only and cannot take images")
        requested = body.get("max_completion_tokens", body.get("max_tokens")) or DEFAULT_MAX_TOKENS
        try:
            max_tokens = int(requested)
            temperature = float(body.get("temperature") or 0.0)
        except (TypeError, ValueError) as exc:
            raise RequestError(400, f"max_tokens and temperature must be numbers ({exc})") from exc
        if max_tokens < 1 or not 0.0 <= temperature <= 2.0:
            raise RequestError(400, "max_tokens must be >= 1 and temperature between 0 and 2")
        return {
            "messages": messages,
            "images": images,
            "max_tokens": min(max_tokens, self.server.max_tokens_cap),
            "temperature": temperature,
            "stream": bool(body.get("stream")),
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "created": int(time.time()),
        }

    def _generate_stream(self, request: dict[str, Any]) -> Any:
        return self.server.model.stream(
            request["messages"],
            request["images"],
            max_new_tokens=request["max_tokens"],
            temperature=request["temperature"],
        )

    def _finish_reason(self, text: str, max_tokens: int) -> str:
        tokens = len(self.server.model.tokenizer(text, add_special_tokens=False)["input_ids"])
        return "length" if tokens >= max_tokens else "stop"

    def _complete(self, request: dict[str, Any]) -> None:
        try:
            text = "".join(self._generate_stream(request))
        except ProviderError as exc:
            self._send_error_json(500, str(exc), "server_error")
            return
        self._send_json(
            200,
            {
                "id": request["id"],
                "object": "chat.completion",
                "created": request["created"],
                "model": self.server.served_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": self._finish_reason(text, request["max_tokens"]),
                    }
                ],
            },
        )

    def _stream_completion(self, request: dict[str, Any]) -> None:
        """Server-sent events, chunked: one ``chat.completion.chunk`` per text delta, then ``[DONE]``."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": request["id"],
                "object": "chat.completion.chunk",
                "created": request["created"],
                "model": self.server.served_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }

        parts: list[str] = []
        try:
            self._write_event(chunk({"role": "assistant", "content": ""}))
            for text in self._generate_stream(request):
                parts.append(text)
                self._write_event(chunk({"content": text}))
            self._write_event(chunk({}, self._finish_reason("".join(parts), request["max_tokens"])))
        except ProviderError as exc:
            self._write_event({"error": {"message": str(exc), "type": "server_error", "code": 500}})
        self._write_raw(b"data: [DONE]\n\n")
        self._write_raw(b"")

    def _write_event(self, event: dict[str, Any]) -> None:
        self._write_raw(f"data: {json.dumps(event)}\n\n".encode())

    def _write_raw(self, data: bytes) -> None:
        """One HTTP/1.1 chunk (an empty one ends the response)."""
        self.wfile.write(f"{len(data):X}\r\n".encode("ascii") + data + b"\r\n")
        self.wfile.flush()


def build_server(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    served_name: str | None = None,
    api_key: str | None = None,
    kind: str = "auto",
    device: str = "auto",
    dtype: str = "auto",
    revision: str | None = None,
    max_tokens_cap: int = 2048,
) -> ChatServer:
    """Load the model now (fail fast with a clear message) and bind the server; call ``serve_forever()``."""
    loaded = load_model(ModelSpec(model=model, revision=revision, kind=kind, device=device, dtype=dtype))  # type: ignore[arg-type]
    return ChatServer((host, port), loaded, served_name or model, api_key, max_tokens_cap)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dermchat serve-openai", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="hub id or folder of a transformers model")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--name", default=None, help="model name clients send (default: --model)")
    parser.add_argument(
        "--api-key-env", default=None, help="environment variable holding the API key clients must send"
    )
    parser.add_argument("--kind", choices=["auto", "image-text-to-text", "text-generation"], default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--max-tokens", type=int, default=2048, help="cap on max_tokens per request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    api_key = None
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            print(f"error: environment variable {args.api_key_env} is not set", file=sys.stderr)
            return 2
    try:
        server = build_server(
            args.model,
            host=args.host,
            port=args.port,
            served_name=args.name,
            api_key=api_key,
            kind=args.kind,
            device=args.device,
            dtype=args.dtype,
            revision=args.revision,
            max_tokens_cap=args.max_tokens,
        )
    except ProviderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port} ({exc})", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    if isinstance(host, bytes):  # only Unix sockets name themselves in bytes; this TCP server never does
        host = host.decode()
    print(f"serving {server.served_name} ({server.model.kind}) at http://{host}:{port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
