"""Local transformers route: tiny random Gemma3 (MedGemma's architecture) and LLaVA checkpoints loaded through
exactly the calls a hub model takes, the unavailable/error paths, ZeroGPU wrapping and local text generation."""

from __future__ import annotations

import socket
import sys
import types
from pathlib import Path

import httpx
import pytest
from PIL import Image

from dermchat.providers import ProviderError
from dermchat.results import Diagnosis
from dermchat.vlm import local
from dermchat.vlm.grounding import NOT_GROUNDED_NOTICE, apply_grounding_probe
from dermchat.vlm.textgen import make_text_generator
from plugins.vlm import TransformersVLMDiagnoser
from tests.vlm_fixtures import assert_diagnosis_contract, make_ctx, tiny_gemma3_dir, tiny_llama_dir, tiny_llava_dir  # noqa: F401


@pytest.mark.parametrize(
    ("fixture", "model_class", "processor_class"),
    [
        ("tiny_gemma3_dir", "Gemma3ForConditionalGeneration", "Gemma3Processor"),
        ("tiny_llava_dir", "LlavaForConditionalGeneration", "LlavaProcessor"),
    ],
)
def test_tiny_vlm_diagnoses_through_the_hub_code_path(
    request: pytest.FixtureRequest, tmp_path: Path, fixture: str, model_class: str, processor_class: str
) -> None:
    model_dir: Path = request.getfixturevalue(fixture)
    provider = TransformersVLMDiagnoser()
    provider.configure({"model": str(model_dir), "max_new_tokens": 24})
    assert provider.available() == (True, "")
    provider.load()
    loaded = provider._model
    assert type(loaded.model).__name__ == model_class and type(loaded.processor).__name__ == processor_class
    assert (loaded.device, str(loaded.dtype)) == ("cpu", "torch.float32")
    ctx, _shown = make_ctx(
        tmp_path, history=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello"}]
    )
    chunks: list[str] = []
    text = loaded.generate(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe"}]}],
        [ctx.image],
        max_new_tokens=8,
        on_text=chunks.append,
    )
    assert text and "".join(chunks) == text
    diagnosis = provider.diagnose(ctx)
    assert_diagnosis_contract(diagnosis, "transformers-vlm")
    assert diagnosis.provider_version == str(model_dir) and diagnosis.extra["model"] == str(model_dir)


def test_history_reaches_the_rendered_prompt(tiny_gemma3_dir: Path) -> None:
    loaded = local.load_model(local.ModelSpec(str(tiny_gemma3_dir), kind="image-text-to-text"))
    from dermchat.vlm.prompt import build_messages
    from dermchat.vocabulary import get_vocabulary

    messages = build_messages(
        get_vocabulary(),
        "patient",
        "Has it grown?",
        [{"role": "user", "content": "Is my mole dangerous?"}, {"role": "assistant", "content": "It looks regular."}],
    )
    prompt = loaded.render_prompt(messages)
    assert prompt.index("Is my mole dangerous?") < prompt.index("It looks regular.") < prompt.index("Has it grown?")
    assert prompt.count("<start_of_image>") == 1 and prompt.rstrip().endswith("<start_of_turn>model")


def test_hub_id_offline_is_unavailable_without_touching_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("available() must not open a connection when the hub is offline")

    monkeypatch.setattr(socket, "create_connection", no_network)
    provider = TransformersVLMDiagnoser()
    provider.configure({"model": "google/medgemma-4b-it"})
    ok, reason = provider.available()
    assert not ok
    assert "google/medgemma-4b-it is not in the local cache and the hub is offline" in reason
    with pytest.raises(ProviderError, match="not in the local cache"):
        local.load_model(local.ModelSpec("google/medgemma-4b-it"))


def test_hub_id_with_unreachable_hub_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(local, "_hub_probe", {})
    calls: list[tuple[object, ...]] = []

    def refused(address: tuple[str, int], timeout: float | None = None) -> socket.socket:
        calls.append((address, timeout))
        raise OSError("network unreachable")

    monkeypatch.setattr(socket, "create_connection", refused)
    ok, reason = local.check_model_source("Qwen/Qwen2.5-VL-3B-Instruct")
    assert not ok and "cannot be reached" in reason
    assert calls == [(("huggingface.co", 443), 2.0)]  # one short probe, not a download attempt


def test_local_folder_problems_and_wrong_model_kind(tmp_path: Path, tiny_llama_dir: Path) -> None:
    assert local.check_model_source(str(tmp_path / "nope")) == (
        False,
        f"the model folder {tmp_path / 'nope'} does not exist",
    )
    ok, reason = local.check_model_source(str(tmp_path))
    assert not ok and "no config.json" in reason
    provider = TransformersVLMDiagnoser()
    provider.configure({"model": str(tiny_llama_dir)})  # a text-only model given to the VLM provider
    assert provider.available() == (True, "")
    with pytest.raises(ProviderError, match="not a kind this provider can run"):
        provider.load()
    ok, reason = provider.available()  # remembered: the next turn falls back instead of failing again
    assert not ok and reason.startswith("loading failed earlier")
    provider.configure({"model": str(tiny_llama_dir), "max_new_tokens": 32})  # new options: try again
    assert provider.available() == (True, "")


def test_load_errors_read_as_plain_language() -> None:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    response = httpx.Response(403, request=httpx.Request("GET", "https://huggingface.co/google/medgemma-4b-it"))
    gated = local.describe_load_error(GatedRepoError("Access restricted", response=response), "google/medgemma-4b-it")
    assert "gated" in gated and "HF_TOKEN" in gated
    response = httpx.Response(404, request=httpx.Request("GET", "https://huggingface.co/x/y"))
    assert "was not found" in local.describe_load_error(RepositoryNotFoundError("nope", response=response), "x/y")
    import torch

    oom = local.describe_load_error(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), "m")
    assert "not enough memory" in oom and "load_in_4bit" in oom


def test_zero_gpu_wraps_generation_with_spaces_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def plain(x: int) -> int:
        return x

    assert local.gpu_wrapped(plain) is plain  # off ZeroGPU: no wrapping, no import of spaces
    seen: list[int] = []
    fake = types.ModuleType("spaces")

    def gpu(duration: int = 60):  # the shape of spaces.GPU(duration=...)
        def wrap(fn):
            seen.append(duration)
            return lambda *a, **k: ("on-gpu", fn(*a, **k))

        return wrap

    fake.GPU = gpu  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert local.gpu_wrapped(plain, duration=90)(3) == ("on-gpu", 3) and seen == [90]


def test_grounding_probe_flags_answers_that_ignore_the_image(tiny_gemma3_dir: Path, tmp_path: Path) -> None:
    from dermchat.results import DifferentialEntry

    base = Diagnosis(provider_id="p", differential=[DifferentialEntry(condition_id="melanoma", probability=1.0)])
    asked: list[tuple[int, int]] = []

    def same_answer(image: Image.Image) -> Diagnosis:
        asked.append(image.size)
        return base

    flagged = apply_grounding_probe(base, (200, 150), same_answer)
    assert NOT_GROUNDED_NOTICE in flagged.notices and asked == [(200, 150), (200, 150)]
    other = Diagnosis(provider_id="p", differential=[DifferentialEntry(condition_id="psoriasis", probability=1.0)])
    kept = apply_grounding_probe(
        base, (200, 150), lambda image: other if image.getpixel((0, 0)) == (128, 128, 128) else base
    )
    assert NOT_GROUNDED_NOTICE not in kept.notices and kept.extra["grounding"]["image_used"] is True
    # Through the provider with a random model: no structured answer, so nothing to compare (and it says so).
    provider = TransformersVLMDiagnoser()
    provider.configure({"model": str(tiny_gemma3_dir), "max_new_tokens": 16, "grounding_probe": True})
    ctx, shown = make_ctx(tmp_path)
    diagnosis = provider.diagnose(ctx)
    assert diagnosis.extra["grounding"]["checked"] is False
    assert "Checking whether the model really uses your photo…" in shown


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_gemma3_dir"])
def test_local_text_generator_streams(request: pytest.FixtureRequest, fixture: str) -> None:
    model_dir: Path = request.getfixturevalue(fixture)
    generator = make_text_generator("transformers", str(model_dir))
    assert generator.available() == (True, "")
    chunks: list[str] = []
    text = generator.generate(
        [{"role": "system", "content": "Answer from the passages."}, {"role": "user", "content": "What is a mole?"}],
        max_new_tokens=12,
        on_text=chunks.append,
    )
    assert isinstance(text, str) and "".join(chunks) == text
    with pytest.raises(ValueError, match="unknown option"):
        make_text_generator("transformers", str(model_dir), base_url="http://x")


def test_stopping_a_stream_early_stops_generation_and_frees_the_model(tiny_llama_dir: Path) -> None:
    loaded = local.load_model(local.ModelSpec(str(tiny_llama_dir)))
    stream = loaded.stream([{"role": "user", "content": "hi"}], max_new_tokens=64)
    assert next(stream)
    stream.close()  # what the server does when a client disconnects
    assert not loaded._generate_lock.locked()
    assert loaded.generate([{"role": "user", "content": "hi"}], max_new_tokens=4)
