"""Tiny random vision-language and text models saved like hub checkpoints, plus a local OpenAI-compatible server.

Why: no real VLM weights can be downloaded here, but the loading code must be exercised exactly as a hub
model would exercise it (``save_pretrained`` -> ``AutoProcessor`` / ``AutoModelForImageTextToText`` /
``pipeline``). The models are random, so their text is noise: tests assert the contract, not the content.

Reuse from another test module with ``from tests.vlm_fixtures import *  # noqa: F403`` or by importing the
fixtures you need (pytest picks up fixtures imported into a test module).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SPECIAL_TOKENS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
    "<image>",
]
_CORPUS = [
    '{"morphology": {"primary_lesion": "macule", "colour": "brown"}, "differential": '
    '[{"condition": "melanocytic_nevus", "likelihood": 0.6}, {"condition": "melanoma", "likelihood": 0.3}], '
    '"triage": "routine", "rationale": "A regular brown spot with an even border."}',
    "Eczema, psoriasis, acne, basal cell carcinoma, seborrheic keratosis, dermatofibroma, vascular lesion.",
]


def _chat_template(image_text: str) -> str:
    """A Gemma-style chat template; ``image_text`` is what an ``{"type": "image"}`` item becomes."""
    return (
        "{{ bos_token }}{% for message in messages %}<start_of_turn>"
        "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
        "{% for item in message['content'] %}{% if item['type'] == 'image' %}"
        + image_text
        + "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}"
        "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )


GEMMA3_IMAGE_TOKENS = {
    "boi_token": "<start_of_image>",
    "eoi_token": "<end_of_image>",
    "image_token": "<image_soft_token>",
}
LLAVA_IMAGE_TOKENS = {"image_token": "<image>"}


def build_tokenizer(image_text: str = "<start_of_image>", image_tokens: dict[str, str] | None = None) -> Any:
    """A byte-level BPE tokenizer trained in memory (no download); ``image_tokens`` names the image specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 10, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens=dict(GEMMA3_IMAGE_TOKENS if image_tokens is None else image_tokens),
    )
    fast.chat_template = _chat_template(image_text)
    return fast


TINY_VISION: dict[str, Any] = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
}
"""A 32x32-pixel vision tower of 16 patches: small enough for CPU tests, real enough for ``from_pretrained``."""


def tiny_text_options(tokenizer: Any) -> dict[str, Any]:
    """Config options of a two-layer text decoder over ``tokenizer`` (special token ids included)."""
    ids = tokenizer.convert_tokens_to_ids
    return {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 4096,
        "pad_token_id": ids("<pad>"),
        "eos_token_id": ids("<eos>"),
        "bos_token_id": ids("<bos>"),
    }


def seeded_model(model_class: Any, config: Any, tokenizer: Any) -> Any:
    """``model_class(config)`` with seed-0 random weights, in eval mode, generating until the tokenizer's <eos>."""
    import torch

    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(0)
    model = model_class(config).eval()
    model.generation_config.eos_token_id = ids("<eos>")
    model.generation_config.pad_token_id = ids("<pad>")
    return model


def build_tiny_gemma3(path: Path) -> Path:
    """A random ``Gemma3ForConditionalGeneration`` (MedGemma's architecture) with processor and chat template."""
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3Processor,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    tokenizer = build_tokenizer("<start_of_image>")
    ids = tokenizer.convert_tokens_to_ids
    text = Gemma3TextConfig(**tiny_text_options(tokenizer), head_dim=16, query_pre_attn_scalar=16, sliding_window=64)
    vision = SiglipVisionConfig(**TINY_VISION)
    config = Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=4,
        boi_token_index=ids("<start_of_image>"),
        eoi_token_index=ids("<end_of_image>"),
        image_token_index=ids("<image_soft_token>"),
    )
    model = seeded_model(Gemma3ForConditionalGeneration, config, tokenizer)
    image_processor = Gemma3ImageProcessorPil(size={"height": 32, "width": 32})
    processor = Gemma3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
        image_seq_length=4,
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_tiny_llava(path: Path) -> Path:
    """A random ``LlavaForConditionalGeneration`` (CLIP tower + Llama) with processor and chat template."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    tokenizer = build_tokenizer("<image>", LLAVA_IMAGE_TOKENS)
    ids = tokenizer.convert_tokens_to_ids
    text = LlamaConfig(**tiny_text_options(tokenizer))
    vision = CLIPVisionConfig(**TINY_VISION, projection_dim=32)
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
    )
    model = seeded_model(LlavaForConditionalGeneration, config, tokenizer)
    image_processor = LlavaImageProcessorPil(size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=tokenizer.chat_template,
        image_token="<image>",
    )
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def build_tiny_llama(path: Path) -> Path:
    """A random ``LlamaForCausalLM`` text-generation model with tokenizer and chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(image_tokens={})
    config = LlamaConfig(**tiny_text_options(tokenizer))
    model = seeded_model(LlamaForCausalLM, config, tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_gemma3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gemma3(tmp_path_factory.mktemp("tiny-gemma3"))


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny-llava"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


class RunningServer:
    """A server thread and its base URL (``http://127.0.0.1:<port>/v1``)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        host, port = server.server_address[:2]
        self.base_url = f"http://{host}:{port}/v1"
        self.thread = threading.Thread(target=server.serve_forever, name="test-openai-server", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def start_openai_server(model_path: Path, **kwargs: Any) -> RunningServer:
    """Start ``dermchat.vlm.server`` on a free 127.0.0.1 port (port 0: the OS picks one)."""
    from dermchat.vlm.server import build_server

    return RunningServer(build_server(str(model_path), host="127.0.0.1", port=0, **kwargs))


@pytest.fixture(scope="session")
def openai_vlm_server(tiny_gemma3_dir: Path) -> Iterator[RunningServer]:
    """A real OpenAI-compatible HTTP server serving the tiny Gemma3 VLM; torn down at the end of the session."""
    running = start_openai_server(tiny_gemma3_dir, served_name="tiny-gemma3")
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="session")
def openai_text_server(tiny_llama_dir: Path) -> Iterator[RunningServer]:
    """The same server serving the tiny Llama text model (for the text-generation backend)."""
    running = start_openai_server(tiny_llama_dir, served_name="tiny-llama")
    try:
        yield running
    finally:
        running.close()


# -- a server that replays recorded responses (for error paths and exact response shapes) ----------------------
# (status, body, content type) or (status, body, content type, extra headers such as {"Retry-After": "0.01"})
Reply = tuple[Any, ...]


class RecordedReplies:
    """Replies a ``RecordingHandler`` gives, in order (the last repeats), and the requests it saw."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = replies
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def next(self) -> Reply:
        with self._lock:
            index = min(len(self.requests) - 1, len(self.replies) - 1)
            return self.replies[index]


def start_recorded_server(replies: list[Reply]) -> tuple[RunningServer, RecordedReplies]:
    """A 127.0.0.1 server answering every POST with recorded ``(status, body, content_type)`` replies.

    Used where a real model cannot produce the case under test: HTTP errors, retries, and exact response
    shapes that real servers (vLLM, Ollama, hosted APIs) have been seen to send.
    """
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    record = RecordedReplies(replies)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            record.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status, text, content_type, *extra = record.next()
            data = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            for name, value in (extra[0] if extra else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return RunningServer(server), record


# An answer in the shape the prompt asks for (prose rationale, then fenced JSON with a synonym and percentages),
# split into stream chunks the way servers deliver it.
STRUCTURED_CHUNKS = [
    "The spot is evenly ",
    "brown with a smooth, regular border.",
    "\n```json\n",
    '{"morphology": {"primary_lesion": "macule", "colour": "brown"}, "differential": [',
    '{"condition": "nevus", "likelihood": "70%"}, {"condition": "melanoma", "likelihood": "30%"}], "triage": "routine"}',
    "\n```",
]


def chat_completion_body(content: str) -> str:
    """A non-streamed chat-completions body as OpenAI-compatible servers send it."""
    import json

    return json.dumps(
        {
            "id": "chatcmpl-rec",
            "object": "chat.completion",
            "created": 0,
            "model": "recorded",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }
    )


def sse_body(chunks: list[str]) -> str:
    """A streamed chat-completions body (server-sent events) delivering ``chunks``."""
    import json

    events = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    events += [{"choices": [{"index": 0, "delta": {"content": c}, "finish_reason": None}]} for c in chunks]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


# -- turn helpers shared by the VLM tests ------------------------------------------------------------------------
def lesion_photo() -> Any:
    """A drawn brown 'lesion' on skin tone (random-weight models cannot tell it from a real photo anyway)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (200, 150), (222, 184, 160))
    ImageDraw.Draw(img).ellipse((70, 45, 130, 105), fill=(110, 70, 50))
    return img


def make_ctx(
    tmp_path: Path, question: str = "What is this spot?", history: list[dict[str, str]] | None = None
) -> tuple[Any, list[str]]:
    """A ``TurnContext`` with the drawn photo, and the list its progress messages land in."""
    from dermchat.context import TurnContext
    from dermchat.request import TurnRequest
    from dermchat.results import TurnResult
    from dermchat.settings import Settings

    shown: list[str] = []
    ctx = TurnContext(
        image=lesion_photo(),
        settings=Settings(),
        workdir=tmp_path,
        request=TurnRequest(question=question, history=history or []),
        result=TurnResult(turn_id="test", image_sha256="x", audience="patient", question=question),
        progress=lambda message, fraction=None: shown.append(message),
    )
    return ctx, shown


def assert_diagnosis_contract(d: Any, provider_id: str) -> None:
    """What every VLM diagnosis must satisfy, whatever the model said."""
    from dermchat.results import Diagnosis
    from dermchat.vlm.parser import NO_STRUCTURED_NOTICE, UNREADABLE_NOTICE

    assert isinstance(d, Diagnosis) and d.provider_id == provider_id
    total = sum(e.probability for e in d.differential)
    assert d.differential == [] or abs(total - 1.0) < 1e-6
    assert set(d.prediction_set) <= {e.condition_id for e in d.differential}
    if not d.differential:  # random weights: the honest fallback, never an invented differential
        assert d.notices and d.notices[0] in {NO_STRUCTURED_NOTICE, UNREADABLE_NOTICE}
    assert isinstance(d.extra["raw_response"], str)
