"""Built-in plugin: diagnosis by vision-language models, local (transformers) or remote (OpenAI-compatible).

Both providers share one prompt, one parser and one streaming path (``dermchat.vlm.diagnose``); they differ
only in where the tokens come from. Nothing heavy is imported here: torch/transformers load in ``_load()``.
A provider whose model failed to load reports itself unavailable with the reason, so the next turn falls
back to the offline classifier instead of failing again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from dermchat.hookspecs import hookimpl
from dermchat.providers import Diagnoser

if TYPE_CHECKING:
    from PIL import Image

    from dermchat.context import TurnContext
    from dermchat.results import Diagnosis


class _CommonOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    max_new_tokens: int = Field(512, ge=16, le=4096, description="answer length cap (rationale + JSON)")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 = greedy (reproducible)")
    grounding_probe: bool = Field(False, description="re-ask with blank/noise images to check the photo is used")


class _VLMDiagnoser(Diagnoser):
    """What both routes share: remembered load failures and the diagnose flow."""

    needs_gpu = True

    def __init__(self) -> None:
        super().__init__()
        self._load_error: str | None = None

    def configure(self, options: dict[str, Any] | None) -> None:
        before = self.options
        super().configure(options)
        if self.options != before:
            self._load_error = None
        self.version = str(getattr(self.options, "model", "") or "unset")

    def load(self, progress: Callable[[str, float | None], None] | None = None) -> None:
        try:
            super().load(progress)
        except Exception as exc:
            self._load_error = str(exc)
            raise

    @property
    def opts(self) -> _CommonOptions:
        """The options, typed: ``configure`` always builds them from this class's ``Options``."""
        assert isinstance(self.options, _CommonOptions)
        return self.options

    def _source_available(self) -> tuple[bool, str]:
        raise NotImplementedError

    def available(self) -> tuple[bool, str]:
        if self._load_error:
            return False, f"loading failed earlier: {self._load_error}"
        return self._source_available()

    def diagnose(self, ctx: TurnContext) -> Diagnosis:
        from dermchat.vlm.diagnose import run_vlm_diagnosis

        self.load()
        opts = self.opts
        return run_vlm_diagnosis(
            self,
            ctx,
            provider_id=self.id,
            provider_version=self.version,
            max_new_tokens=opts.max_new_tokens,
            temperature=opts.temperature,
            grounding_probe=opts.grounding_probe,
            extra={"model": getattr(opts, "model", "")},
        )

    def chat(
        self,
        messages: list[dict[str, Any]],
        image: Image.Image,
        *,
        max_new_tokens: int,
        temperature: float,
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        raise NotImplementedError


class TransformersVLMDiagnoser(_VLMDiagnoser):
    """Any image-text-to-text model by hub id or folder: MedGemma, Qwen2/2.5-VL, LLaVA(-Med)."""

    id = "transformers-vlm"
    label = "Vision-language model (local)"
    description = (
        "A local transformers vision-language model (default MedGemma 4B) asked for a structured differential."
    )

    class Options(_CommonOptions):
        model: str = Field("google/medgemma-4b-it", description="hub id or local folder")
        revision: str | None = None
        token: str | None = Field(None, description="hub token for gated models; HF_TOKEN is used when unset")
        device: str = Field("auto", description="auto = cuda if available, else cpu")
        dtype: str = Field("auto", description="auto = bfloat16 on GPU, float32 on CPU")
        load_in_4bit: bool = Field(False, description="4-bit weights via bitsandbytes (CUDA only)")
        require_gpu: bool = Field(False, description="report unavailable when no CUDA GPU is present")
        trust_remote_code: bool = False

    def __init__(self) -> None:
        super().__init__()
        self._model: Any = None
        self.version = self.opts.model

    @property
    def opts(self) -> TransformersVLMDiagnoser.Options:
        assert isinstance(self.options, TransformersVLMDiagnoser.Options)
        return self.options

    def _spec(self) -> Any:
        from dermchat.vlm.local import ModelSpec

        o = self.opts
        return ModelSpec(
            model=o.model,
            revision=o.revision,
            token=o.token,
            kind="image-text-to-text",
            device=o.device,
            dtype=o.dtype,
            load_in_4bit=o.load_in_4bit,
            trust_remote_code=o.trust_remote_code,
        )

    def _source_available(self) -> tuple[bool, str]:
        from dermchat.vlm.local import check_model_source

        o = self.opts
        if o.require_gpu:
            import torch

            if not torch.cuda.is_available():
                return False, "no CUDA GPU here and require_gpu is set"
        return check_model_source(o.model, o.revision)

    def _load(self) -> None:
        from dermchat.vlm.local import load_model

        self._model = load_model(self._spec())

    def chat(
        self,
        messages: list[dict[str, Any]],
        image: Image.Image,
        *,
        max_new_tokens: int,
        temperature: float,
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        return self._model.generate(
            messages, [image], max_new_tokens=max_new_tokens, temperature=temperature, on_text=on_text
        )


class OpenAIVLMDiagnoser(_VLMDiagnoser):
    """A vision model behind any OpenAI-compatible server (vLLM, TGI, Ollama, LM Studio, hosted endpoints), via the openai SDK."""

    id = "openai-vlm"
    label = "Vision-language model (server)"
    needs_gpu = False  # the server has the GPU, not this machine
    description = "A vision-language model on an OpenAI-compatible chat-completions server."

    class Options(_CommonOptions):
        base_url: str = Field("", description="e.g. http://127.0.0.1:8000/v1")
        model: str = Field("", description="the model name the server expects")
        api_key: str | None = Field(None, description='the API key; better {"$env": "NAME"} than the key itself')
        api_key_env: str | None = Field("OPENAI_API_KEY", description="environment variable read when api_key is unset")
        timeout_s: float = Field(120.0, gt=0, le=900)
        retries: int = Field(2, ge=0, le=6)
        stream: bool = True
        max_image_side: int = Field(
            1024, ge=64, le=4096, description="longer side is downscaled to this before sending"
        )
        jpeg_quality: int = Field(90, ge=30, le=100)

    def __init__(self) -> None:
        super().__init__()
        self._client: Any = None
        self.version = "unset"

    @property
    def opts(self) -> OpenAIVLMDiagnoser.Options:
        assert isinstance(self.options, OpenAIVLMDiagnoser.Options)
        return self.options

    def _source_available(self) -> tuple[bool, str]:
        from dermchat.vlm.openai_client import server_reachable

        o = self.opts
        if not o.base_url:
            return False, "no server address configured (set the 'base_url' option)"
        if not o.model:
            return False, "no model name configured (set the 'model' option)"
        if not server_reachable(o.base_url):
            return False, f"the model server at {o.base_url} cannot be reached"
        return True, ""

    def _load(self) -> None:
        from dermchat.vlm.openai_client import OpenAIChatClient

        o = self.opts
        if self._client is not None:
            self._client.close()
        self._client = OpenAIChatClient(
            o.base_url,
            o.model,
            api_key=o.api_key,
            api_key_env=o.api_key_env,
            timeout_s=o.timeout_s,
            retries=o.retries,
        )

    def chat(
        self,
        messages: list[dict[str, Any]],
        image: Image.Image,
        *,
        max_new_tokens: int,
        temperature: float,
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        from dermchat.vlm.openai_client import image_data_url
        from dermchat.vlm.prompt import to_openai_messages

        o = self.opts
        image = _downscaled(image, o.max_image_side)
        payload = to_openai_messages(messages, image_data_url(image, quality=o.jpeg_quality))
        return self._client.chat(
            payload,
            max_tokens=max_new_tokens,
            temperature=temperature,
            stream=o.stream,
            on_text=on_text,
        )


def _downscaled(image: Image.Image, max_side: int) -> Image.Image:
    """Servers resize anyway; sending fewer bytes is faster and leaks less detail than needed."""
    if max(image.size) <= max_side:
        return image
    copy = image.copy()
    copy.thumbnail((max_side, max_side))
    return copy


@hookimpl
def register_diagnosers(register: Callable[[Diagnoser], None]) -> None:
    register(TransformersVLMDiagnoser())
    register(OpenAIVLMDiagnoser())


@hookimpl
def register_benchmarks(register: Callable[[str, Callable[[dict[str, Any]], dict[str, Any]]], None]) -> None:
    def vlm_parser(options: dict[str, Any]) -> dict[str, Any]:
        from dermchat.vlm.bench import parser_figures

        return parser_figures(options)

    register("vlm-parser", vlm_parser)
