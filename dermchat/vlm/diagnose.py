"""The diagnosis flow both VLM routes share: prompt -> streamed answer -> parsed ``Diagnosis`` -> probe.

A route only has to provide ``chat(messages, image, ...) -> str`` (a local model or a server); everything the
user sees (the streamed rationale, the structured result, the grounding notice) is decided here once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from dermchat.providers import ProviderError
from dermchat.results import Diagnosis
from dermchat.vlm.grounding import apply_grounding_probe
from dermchat.vlm.parser import parse_response
from dermchat.vlm.prompt import Message, build_messages
from dermchat.vlm.streaming import RationaleStream
from dermchat.vocabulary import get_vocabulary

if TYPE_CHECKING:
    from PIL import Image

    from dermchat.context import TurnContext


class ChatBackend(Protocol):
    """Something that answers chat messages about one image (local model or OpenAI-compatible server)."""

    def chat(
        self,
        messages: list[Message],
        image: Image.Image,
        *,
        max_new_tokens: int,
        temperature: float,
        on_text: Callable[[str], None] | None = None,
    ) -> str: ...


def run_vlm_diagnosis(
    backend: ChatBackend,
    ctx: TurnContext,
    *,
    provider_id: str,
    provider_version: str,
    max_new_tokens: int,
    temperature: float,
    grounding_probe: bool = False,
    extra: dict[str, Any] | None = None,
) -> Diagnosis:
    """Ask the model about ``ctx.image``, streaming the rationale to ``ctx.progress``, and parse the answer."""
    if ctx.image is None:
        raise ProviderError("there is no photo to look at")
    vocab = get_vocabulary()
    messages = build_messages(vocab, ctx.audience, ctx.question, ctx.history, body_site=ctx.body_site)
    stream = RationaleStream(ctx.progress)
    text = backend.chat(messages, ctx.image, max_new_tokens=max_new_tokens, temperature=temperature, on_text=stream.add)
    stream.finish()
    diagnosis = parse_response(text, provider_id=provider_id, provider_version=provider_version)
    diagnosis.extra.update(extra or {})
    diagnosis.rationale_audience = ctx.audience  # the prompt asked for wording for this audience
    if grounding_probe:
        ctx.progress("Checking whether the model really uses your photo…", None)

        def ask(image: Image.Image) -> Diagnosis:
            answer = backend.chat(messages, image, max_new_tokens=max_new_tokens, temperature=temperature)
            return parse_response(answer, provider_id=provider_id, provider_version=provider_version)

        diagnosis = apply_grounding_probe(diagnosis, ctx.image.size, ask)
    return diagnosis
