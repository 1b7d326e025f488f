"""Local transformers models (image-text-to-text VLMs and text-generation LMs) behind one small interface.

A hub id and a local folder load through the same calls (``AutoProcessor`` + ``AutoModelForImageTextToText``,
or ``AutoTokenizer`` + ``AutoModelForCausalLM``), so the tiny random checkpoints in the tests exercise exactly
the path MedGemma, Qwen2.5-VL or LLaVA take. Loaded models are cached per process by their spec: the VLM
diagnoser, the explainer's generator and the model server share one copy of the weights.

Availability is answered from the file system and the local hub cache only, never by a download attempt:
with the hub unreachable, a load would hang for about a minute before failing.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dermchat.providers import ProviderError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

ModelKind = Literal["auto", "image-text-to-text", "text-generation"]
Message = dict[str, Any]
_TRUE = {"1", "true", "yes", "on"}
_HUB_PROBE_TTL_S = 60.0
_hub_probe: dict[str, tuple[float, bool]] = {}


# -- availability --------------------------------------------------------------------------------------------
def hub_offline() -> bool:
    """The user asked for offline mode (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """A quick TCP connect to the hub endpoint (cached for a minute), instead of a load that hangs."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    hostname, _, port = host.partition(":")
    now = time.monotonic()
    cached = _hub_probe.get(host)
    if cached and now - cached[0] < _HUB_PROBE_TTL_S:
        return cached[1]
    try:
        with socket.create_connection((hostname, int(port or 443)), timeout=timeout_s):
            ok = True
    except OSError:
        ok = False
    _hub_probe[host] = (now, ok)
    return ok


def looks_like_path(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or Path(model).expanduser().exists()


def in_hub_cache(model: str, revision: str | None = None) -> bool:
    """Whether the model's ``config.json`` is in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - a malformed id simply is not cached
        return False
    return isinstance(found, str)


def check_model_source(model: str, revision: str | None = None) -> tuple[bool, str]:
    """Can ``model`` be loaded here without a download that cannot succeed? ``(ok, reason)``, fast."""
    if not model.strip():
        return False, "no model configured (set the provider's 'model' option to a hub id or a folder)"
    if looks_like_path(model):
        path = Path(model).expanduser()
        if not path.is_dir():
            return False, f"the model folder {path} does not exist"
        if not (path / "config.json").exists():
            return False, f"the folder {path} has no config.json, so it is not a saved transformers model"
        return True, ""
    if in_hub_cache(model, revision):
        return True, ""
    if hub_offline():
        return False, (
            f"model {model} is not in the local cache and the hub is offline (HF_HUB_OFFLINE=1); download it "
            "on a connected machine first, or use the offline classifier"
        )
    if not hub_reachable():
        return False, (
            f"model {model} is not in the local cache and the Hugging Face hub cannot be reached from here; "
            "download it first, or use the offline classifier"
        )
    return True, ""


# -- loading ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """Everything that decides which weights load where; equal specs share one loaded model."""

    model: str
    revision: str | None = None
    token: str | None = None
    kind: ModelKind = "auto"
    device: str = "auto"
    dtype: str = "auto"
    load_in_4bit: bool = False
    trust_remote_code: bool = False

    def resolved_token(self) -> str | None:
        return self.token or os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None

    def __repr__(self) -> str:  # never print the token
        return f"ModelSpec(model={self.model!r}, kind={self.kind!r}, device={self.device!r}, dtype={self.dtype!r})"


def on_zero_gpu() -> bool:
    """Running on a Hugging Face ZeroGPU Space (GPU attached only inside ``@spaces.GPU`` calls)."""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in _TRUE


def gpu_wrapped(fn: Callable[..., Any], duration: int = 120) -> Callable[..., Any]:
    """``spaces.GPU(fn)`` on ZeroGPU, ``fn`` itself elsewhere (``spaces`` is imported only when needed)."""
    if not on_zero_gpu():
        return fn
    import spaces

    wrapped: Callable[..., Any] = spaces.GPU(duration=duration)(fn)
    return wrapped


def _pick_device_dtype(device: str, dtype: str) -> tuple[str, Any]:
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        if device.startswith("cuda"):
            chosen = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            chosen = torch.float32
    else:
        named = getattr(torch, dtype, None)
        if not isinstance(named, torch.dtype):
            raise ProviderError(f"unknown dtype {dtype!r} (use auto, float32, bfloat16 or float16)")
        chosen = named
    return device, chosen


def describe_load_error(exc: BaseException, model: str) -> str:
    """A plain-language reason for a failed load (gated, missing, offline, out of memory, wrong kind)."""
    name = type(exc).__name__
    text = str(exc)
    low = text.lower()
    if name == "GatedRepoError" or "gated" in low or "401" in low or "403" in low:
        return (
            f"model {model} is gated: accept its licence on huggingface.co and provide a token "
            "(HF_TOKEN environment variable or the provider's 'token' option)"
        )
    if name == "RepositoryNotFoundError" or "is not a valid model identifier" in low or "404" in low:
        return f"model {model} was not found (check the hub id or folder name; private models need a token)"
    if name in {"OutOfMemoryError", "MemoryError"} or "out of memory" in low:
        return f"not enough memory to load model {model}; try load_in_4bit, a smaller model, or the offline classifier"
    if name in {"LocalEntryNotFoundError", "OfflineModeIsEnabled"} or "offline" in low or "connect" in low:
        return f"model {model} is not in the local cache and the hub cannot be reached"
    if "unrecognized configuration class" in low or "does not recognize this architecture" in low:
        return f"model {model} is not a kind this provider can run ({text.splitlines()[0][:200]})"
    return f"could not load model {model}: {name}: {text.splitlines()[0][:300] if text else ''}"


def _quantization(spec: ModelSpec, device: str, dtype: Any) -> dict[str, Any]:
    """4-bit loading kwargs when asked for and possible; otherwise nothing (with a log line saying why)."""
    if not spec.load_in_4bit:
        return {}
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        log.warning("load_in_4bit requested but bitsandbytes is not installed; loading %s unquantised", spec.model)
        return {}
    if not device.startswith("cuda"):
        log.warning("load_in_4bit needs a CUDA GPU; loading %s unquantised on %s", spec.model, device)
        return {}
    from transformers import BitsAndBytesConfig

    return {
        "quantization_config": BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype),
        "device_map": "auto",
    }


class LoadedModel:
    """A processor/tokenizer and model, with streaming chat generation."""

    def __init__(self, spec: ModelSpec, kind: ModelKind, processor: Any, model: Any, device: str, dtype: Any) -> None:
        self.spec = spec
        self.kind = kind
        self.processor = processor
        self.model = model
        self.device = device
        self.dtype = dtype
        self._generate_lock = threading.Lock()  # one generation at a time per model: memory, not speed, binds
        self._stream_fn = gpu_wrapped(self._stream_on_device)

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def accepts_images(self) -> bool:
        return self.kind == "image-text-to-text"

    # -- prompt -----------------------------------------------------------------------------------------------
    def render_prompt(self, messages: list[Message]) -> str:
        """Apply the model's chat template; folds the system message into the user turn if the template refuses it."""
        from dermchat.vlm.prompt import fold_system

        messages = flatten_content(messages) if self.kind == "text-generation" else as_content_lists(messages)
        template_owner = self.processor if self.kind == "image-text-to-text" else self.tokenizer
        if not getattr(template_owner, "chat_template", None) and not getattr(self.tokenizer, "chat_template", None):
            return plain_prompt(flatten_content(messages))
        try:
            prompt: str = template_owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
            return prompt
        except Exception as exc:
            if not any(m["role"] == "system" for m in messages):
                raise ProviderError(f"the chat template of {self.spec.model} failed: {exc}") from exc
            log.info("chat template rejected the system role (%s); folding it into the user turn", exc)
            folded: str = template_owner.apply_chat_template(
                fold_system(messages), add_generation_prompt=True, tokenize=False
            )
            return folded

    def _inputs(self, prompt: str, images: list[Image.Image] | None) -> Any:
        if self.kind == "image-text-to-text":
            inputs = self.processor(text=[prompt], images=images or None, return_tensors="pt")
        else:
            inputs = self.tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
        inputs = inputs.to(self.model.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        return inputs

    # -- generation -------------------------------------------------------------------------------------------
    def stream(
        self,
        messages: list[Message],
        images: list[Image.Image] | None = None,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
    ) -> Iterator[str]:
        """Yield text chunks as they are generated."""
        if images and not self.accepts_images:
            raise ProviderError(f"model {self.spec.model} is a text-only model and cannot look at images")
        prompt = self.render_prompt(messages)
        with self._generate_lock:
            yield from self._stream_fn(prompt, images, max_new_tokens, temperature)

    def _stream_on_device(
        self, prompt: str, images: list[Image.Image] | None, max_new_tokens: int, temperature: float
    ) -> Iterator[str]:
        """The GPU part (wrapped by ``spaces.GPU`` on ZeroGPU): generate in a thread, yield from a streamer.

        If the consumer stops early (a server client disconnects), generation is stopped too, so the model
        lock is never released while a stray generation still runs.
        """
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        stop = threading.Event()

        class _StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return stop.is_set()

        inputs = self._inputs(prompt, images)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        kwargs: dict[str, Any] = dict(
            **inputs,
            max_new_tokens=max_new_tokens,
            streamer=streamer,
            stopping_criteria=StoppingCriteriaList([_StopWhenAsked()]),
        )
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with torch.inference_mode():
                    self.model.generate(**kwargs)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, name="dermchat-generate", daemon=True)
        worker.start()
        try:
            for chunk in streamer:
                if chunk:
                    yield chunk
        finally:
            stop.set()
            worker.join()
        if failure:
            exc = failure[0]
            if "out of memory" in str(exc).lower():
                raise ProviderError(f"the model ran out of memory while answering ({self.spec.model})") from exc
            raise ProviderError(f"the model failed while answering: {type(exc).__name__}: {exc}") from exc

    def generate(
        self,
        messages: list[Message],
        images: list[Image.Image] | None = None,
        *,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        """The whole answer; ``on_text`` receives each chunk as it arrives."""
        parts: list[str] = []
        for chunk in self.stream(messages, images, max_new_tokens=max_new_tokens, temperature=temperature):
            parts.append(chunk)
            if on_text is not None:
                on_text(chunk)
        return "".join(parts)


def flatten_content(messages: list[Message]) -> list[Message]:
    """Content lists -> plain strings (text-only chat templates expect strings); image items are dropped."""
    out = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            content = "\n\n".join(item["text"] for item in content if item.get("type") == "text")
        out.append({"role": message["role"], "content": content})
    return out


def as_content_lists(messages: list[Message]) -> list[Message]:
    """Plain-string contents -> ``[{"type": "text", ...}]``: processors' chat templates expect content lists."""
    return [
        {"role": m["role"], "content": [{"type": "text", "text": m["content"]}]} if isinstance(m["content"], str) else m
        for m in messages
    ]


def plain_prompt(messages: list[Message]) -> str:
    """For tokenizers without a chat template (base models): a readable transcript ending with the answer cue."""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(lines) + "\n\nAssistant:"


_cache: dict[ModelSpec, LoadedModel] = {}
_cache_lock = threading.Lock()


def load_model(spec: ModelSpec) -> LoadedModel:
    """Load (once per process) or return the cached model for ``spec``; failures raise ``ProviderError``."""
    with _cache_lock:
        if spec in _cache:
            return _cache[spec]
        ok, reason = check_model_source(spec.model, spec.revision)
        if not ok:
            raise ProviderError(reason)
        try:
            loaded = _load_uncached(spec)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(describe_load_error(exc, spec.model)) from exc
        _cache[spec] = loaded
        return loaded


def unload_all() -> None:
    """Forget cached models (tests, memory pressure); the weights are freed when nothing else holds them."""
    with _cache_lock:
        _cache.clear()


def _load_uncached(spec: ModelSpec) -> LoadedModel:
    if on_zero_gpu():
        import spaces  # noqa: F401 - must be imported before torch initialises CUDA on ZeroGPU
    from transformers import AutoConfig

    device, dtype = _pick_device_dtype(spec.device, spec.dtype)
    common: dict[str, Any] = {
        "revision": spec.revision,
        "token": spec.resolved_token(),
        "trust_remote_code": spec.trust_remote_code,
    }
    model_path = str(Path(spec.model).expanduser()) if looks_like_path(spec.model) else spec.model
    kind = spec.kind
    if kind == "auto":
        config = AutoConfig.from_pretrained(model_path, **common)
        kind = "image-text-to-text" if _is_image_text_to_text(config) else "text-generation"
    quant = _quantization(spec, device, dtype)
    if kind == "image-text-to-text":
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(model_path, **common)
        model = AutoModelForImageTextToText.from_pretrained(model_path, dtype=dtype, **quant, **common)
    else:
        processor, model = _load_text_model(model_path, dtype, quant, common)
    if not quant:
        # transformers types its wrapped `to` for a PreTrainedModel `self` only, so a device argument looks wrong
        model = model.to(device)  # type: ignore[arg-type]
    model.eval()
    log.info("loaded %s as %s on %s (%s)", spec.model, kind, device, dtype)
    return LoadedModel(spec, kind, processor, model, device, dtype)


def _is_image_text_to_text(config: Any) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return getattr(config, "model_type", None) in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES


def _load_text_model(model_path: str, dtype: Any, quant: dict[str, Any], common: dict[str, Any]) -> tuple[Any, Any]:
    """Tokenizer + causal LM (VLM checkpoints such as MedGemma never get here: they load as image-text-to-text)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path, **common)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, **quant, **common)
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model
