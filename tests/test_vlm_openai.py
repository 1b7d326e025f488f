"""OpenAI-compatible route: a real HTTP server (dermchat serve-openai) serving tiny models through the protocol,
plus recorded replies for what a random model cannot produce (HTTP errors, retries, structured answers)."""

from __future__ import annotations

import base64
import io
import json
import socket
from pathlib import Path

import httpx
import pytest
from PIL import Image

from dermchat.providers import ProviderError
from dermchat.vlm.openai_client import OpenAIChatClient, image_data_url
from dermchat.vlm.server import build_server, main
from dermchat.vlm.textgen import make_text_generator
from plugins.vlm import OpenAIVLMDiagnoser
from tests.vlm_fixtures import (  # noqa: F401 - fixtures
    STRUCTURED_CHUNKS,
    RunningServer,
    assert_diagnosis_contract,
    chat_completion_body,
    lesion_photo,
    make_ctx,
    openai_text_server,
    openai_vlm_server,
    sse_body,
    start_recorded_server,
    tiny_gemma3_dir,
    tiny_llama_dir,
)

USER_PARTS = [{"type": "text", "text": "Describe the image."}]


def vlm_provider(base_url: str, model: str, **options: object) -> OpenAIVLMDiagnoser:
    provider = OpenAIVLMDiagnoser()
    provider.configure({"base_url": base_url, "model": model, "max_new_tokens": 24, "retries": 0, **options})
    return provider


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_lists_its_model(openai_vlm_server: RunningServer) -> None:
    client = OpenAIChatClient(openai_vlm_server.base_url, "tiny-gemma3", api_key_env=None)
    assert client.models() == ["tiny-gemma3"]
    health = httpx.get(openai_vlm_server.base_url.removesuffix("/v1") + "/health").json()
    assert health == {"status": "ok", "model": "tiny-gemma3"}


@pytest.mark.parametrize("stream", [True, False])
def test_openai_vlm_diagnoses_through_the_local_server(
    openai_vlm_server: RunningServer, tmp_path: Path, stream: bool
) -> None:
    provider = vlm_provider(openai_vlm_server.base_url, "tiny-gemma3", stream=stream)
    assert provider.available() == (True, "")
    ctx, _ = make_ctx(tmp_path)
    diagnosis = provider.diagnose(ctx)
    assert_diagnosis_contract(diagnosis, "openai-vlm")
    assert diagnosis.provider_version == "tiny-gemma3"


def test_stream_and_non_stream_give_the_same_greedy_answer(openai_vlm_server: RunningServer) -> None:
    client = OpenAIChatClient(openai_vlm_server.base_url, "tiny-gemma3", api_key_env=None)
    messages = [
        {
            "role": "user",
            "content": [*USER_PARTS, {"type": "image_url", "image_url": {"url": image_data_url(lesion_photo())}}],
        }
    ]
    chunks: list[str] = []
    streamed = client.chat(messages, max_tokens=12, stream=True, on_text=chunks.append)
    whole = client.chat(messages, max_tokens=12, stream=False)
    assert streamed == whole == "".join(chunks) and whole


def test_server_protocol_errors_are_clear(openai_vlm_server: RunningServer, openai_text_server: RunningServer) -> None:
    wrong_model = OpenAIChatClient(openai_vlm_server.base_url, "gpt-4o", api_key_env=None)
    with pytest.raises(ProviderError, match=r"does not know model 'gpt-4o'.*HTTP 404"):
        wrong_model.chat([{"role": "user", "content": "hi"}], stream=False)
    text_only = OpenAIChatClient(openai_text_server.base_url, "tiny-llama", api_key_env=None)
    image_message = [
        {
            "role": "user",
            "content": [*USER_PARTS, {"type": "image_url", "image_url": {"url": image_data_url(lesion_photo())}}],
        }
    ]
    with pytest.raises(ProviderError, match=r"refused the request \(HTTP 400: model 'tiny-llama' is text-only"):
        text_only.chat(image_message, stream=True)
    remote_image = [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}]}
    ]
    with pytest.raises(ProviderError, match="only data: image URLs"):
        text_only.chat(remote_image, stream=False)
    raw = httpx.post(
        openai_vlm_server.base_url + "/chat/completions",
        content=b"{not json",
        headers={"Content-Type": "application/json"},
    )
    assert raw.status_code == 400 and "not valid JSON" in raw.json()["error"]["message"]


def test_server_api_key_is_enforced(tiny_gemma3_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    running = RunningServer(build_server(str(tiny_gemma3_dir), port=0, served_name="m", api_key="s3cret"))
    try:
        monkeypatch.delenv("DERMCHAT_TEST_KEY", raising=False)
        anonymous = OpenAIChatClient(running.base_url, "m", api_key_env="DERMCHAT_TEST_KEY")
        with pytest.raises(ProviderError, match=r"rejected the API key \(HTTP 401.*set the DERMCHAT_TEST_KEY"):
            anonymous.models()
        monkeypatch.setenv("DERMCHAT_TEST_KEY", "s3cret")
        assert OpenAIChatClient(running.base_url, "m", api_key_env="DERMCHAT_TEST_KEY").models() == ["m"]
        provider = vlm_provider(running.base_url, "m", api_key="s3cret", api_key_env=None)  # the SDK's api_key option
        provider.load()
        assert provider._client.models() == ["m"]
    finally:
        running.close()


def test_text_generator_through_the_server(openai_text_server: RunningServer) -> None:
    generator = make_text_generator("openai", "tiny-llama", base_url=openai_text_server.base_url, api_key_env=None)
    assert generator.available() == (True, "")
    messages = [{"role": "system", "content": "Use the passages."}, {"role": "user", "content": "What is eczema?"}]
    chunks: list[str] = []
    streamed = generator.generate(messages, max_new_tokens=10, on_text=chunks.append)
    assert streamed == "".join(chunks) == generator.generate(messages, max_new_tokens=10)


def test_structured_streamed_answer_and_exif_free_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    running, record = start_recorded_server([(200, sse_body(STRUCTURED_CHUNKS), "text/event-stream")])
    try:
        provider = vlm_provider(running.base_url, "medgemma", max_image_side=128)
        ctx, shown = make_ctx(tmp_path, question="Is it a mole?")
        exif = Image.Exif()
        exif[0x010F] = "PhoneMaker"  # camera make
        with_exif = io.BytesIO()
        lesion_photo().save(with_exif, format="JPEG", exif=exif)
        ctx.image = Image.open(io.BytesIO(with_exif.getvalue()))
        assert ctx.image.getexif()  # the input really carries EXIF
        diagnosis = provider.diagnose(ctx)
    finally:
        running.close()
    assert [(e.condition_id, round(e.probability, 2)) for e in diagnosis.differential] == [
        ("melanocytic_nevus", 0.7),
        ("melanoma", 0.3),
    ]
    assert diagnosis.triage_hint == "routine" and diagnosis.morphology == {
        "primary_lesion": "macule",
        "colour": "brown",
    }
    assert diagnosis.rationale == "The spot is evenly brown with a smooth, regular border."
    assert shown[-1] == diagnosis.rationale  # streamed into the chat, JSON never shown
    request = record.requests[0]
    assert request["path"] == "/v1/chat/completions" and request["body"]["stream"] is True
    assert {k.lower(): v for k, v in request["headers"].items()}[
        "authorization"
    ] == "Bearer EMPTY"  # no key configured: the placeholder, never "None"
    assert request["body"]["model"] == "medgemma" and request["body"]["max_tokens"] == 24
    parts = request["body"]["messages"][-1]["content"]
    url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert not sent.getexif() and "exif" not in sent.info and max(sent.size) == 128
    assert '"Is it a mole?"' in next(p["text"] for p in parts if p["type"] == "text")


SOON = {"Retry-After": "0.01"}  # the server's own delay before a retry (honoured by the SDK): keeps tests fast


def test_retries_transient_errors_then_succeeds() -> None:
    overloaded = (503, json.dumps({"error": {"message": "overloaded"}}), "application/json", SOON)
    running, record = start_recorded_server(
        [overloaded, overloaded, (200, chat_completion_body("ok"), "application/json")]
    )
    try:
        client = OpenAIChatClient(running.base_url, "m", api_key_env=None, retries=2)
        assert client.chat([{"role": "user", "content": "hi"}], stream=False) == "ok"
        assert len(record.requests) == 3
    finally:
        running.close()


@pytest.mark.parametrize(
    ("status", "body", "stream", "pattern", "attempts"),
    [
        (503, '{"error": {"message": "overloaded"}}', False, r"failed \(HTTP 503: overloaded\) after 3 attempt", 3),
        (500, "Internal Server Error", True, r"failed \(HTTP 500: Internal Server Error\) after 3 attempt", 3),
        (
            400,
            '{"error": {"message": "image too large", "type": "invalid_request_error"}}',
            True,
            r"refused the request \(HTTP 400: image too large\)",
            1,
        ),
        (422, '{"detail": "messages: field required"}', False, r"HTTP 422: messages: field required", 1),
    ],
)
def test_http_errors_give_clear_messages(status: int, body: str, stream: bool, pattern: str, attempts: int) -> None:
    running, record = start_recorded_server([(status, body, "application/json", SOON)])
    try:
        client = OpenAIChatClient(running.base_url, "m", api_key_env=None, retries=2)
        with pytest.raises(ProviderError, match=pattern):
            client.chat([{"role": "user", "content": "hi"}], stream=stream)
        assert len(record.requests) == attempts  # 4xx is never retried; 5xx is, a bounded number of times
    finally:
        running.close()


def test_error_event_inside_a_stream_is_reported() -> None:
    body = (
        'data: {"choices": [{"delta": {"content": "The"}}]}\n\ndata: {"error": {"message": "CUDA out of memory"}}\n\n'
    )
    running, _ = start_recorded_server([(200, body, "text/event-stream")])
    try:
        client = OpenAIChatClient(running.base_url, "m", api_key_env=None)
        with pytest.raises(ProviderError, match="reported an error while answering: CUDA out of memory"):
            client.chat([{"role": "user", "content": "hi"}])
    finally:
        running.close()


def test_unreachable_server_is_unavailable_and_connection_errors_are_bounded() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    provider = vlm_provider(url, "m")
    ok, reason = provider.available()
    assert not ok and "cannot be reached" in reason
    assert vlm_provider("", "m").available() == (False, "no server address configured (set the 'base_url' option)")
    client = OpenAIChatClient(url, "m", api_key_env=None, retries=1)
    with pytest.raises(ProviderError, match=r"could not be reached after 2 attempt\(s\) \(ConnectError\)"):
        client.chat([{"role": "user", "content": "hi"}])


def test_serve_openai_main_reports_a_bad_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert "does not exist" in capsys.readouterr().err
