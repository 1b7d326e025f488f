"""The structured prompt every VLM route uses, so local models and servers answer in one parseable shape.

Messages use the Hugging Face content-list format (``{"type": "image"}`` / ``{"type": "text"}``), which
processors' chat templates understand; ``to_openai_messages`` turns the image item into a data URL for
chat-completions servers. The model is asked to write its rationale *first* (plain prose, streamed to the
chat as it is generated) and the JSON block second, so a user sees words appear rather than braces.
"""

from __future__ import annotations

import json
from typing import Any

from dermchat.results import Audience
from dermchat.vocabulary import Vocabulary

MORPHOLOGY_FIELDS: tuple[str, ...] = ("primary_lesion", "colour", "border", "surface", "distribution")
TRIAGE_TIERS: tuple[str, ...] = ("reassure", "routine", "urgent")
HISTORY_TURNS = 6  # earlier chat messages carried over; older ones rarely matter and cost context

Message = dict[str, Any]

_AUDIENCE_STYLE: dict[str, str] = {
    "patient": (
        "Write the rationale for a worried layperson: plain words, no jargon, short sentences, and never state a "
        "diagnosis as certain."
    ),
    "clinician": (
        "Write the rationale for a clinician: use dermatological terms (morphology, dermoscopic features), be "
        "concise, and state the features for and against the leading conditions."
    ),
}

_EXAMPLE = {
    "morphology": {
        "primary_lesion": "macule | papule | plaque | nodule | vesicle | pustule | patch | ...",
        "colour": "e.g. uniform light brown",
        "border": "e.g. regular, well defined",
        "surface": "e.g. smooth, scaly, crusted, ulcerated",
        "distribution": "e.g. solitary, grouped, symmetric",
    },
    "differential": [
        {"condition": "<condition id from the list>", "likelihood": 0.6},
        {"condition": "<another condition id>", "likelihood": 0.3},
    ],
    "triage": "reassure | routine | urgent",
    "rationale": "<the same short rationale>",
}


def condition_list(vocab: Vocabulary, audience: Audience) -> str:
    """One line per condition, ``id: name``: the ids are what the answer must use."""
    return "\n".join(f"- {cond.id}: {cond.name(audience)}" for cond in vocab)


def system_prompt(vocab: Vocabulary, audience: Audience) -> str:
    """Instructions: role, safety stance, the allowed vocabulary and the exact answer format."""
    return (
        "You are a careful dermatology assistant looking at one photo of skin. You do not diagnose; you describe "
        "what is visible and which conditions a clinician might consider.\n\n"
        "Answer in two parts.\n"
        "1. First, a short rationale (2 to 4 sentences) in plain prose: what you see and why it points to the "
        "leading conditions.\n"
        "2. Then a single JSON object in a ```json code block with exactly these keys:\n"
        f"{json.dumps(_EXAMPLE, indent=1)}\n\n"
        "Rules for the JSON:\n"
        f'- morphology: the fields {", ".join(MORPHOLOGY_FIELDS)}; write "unclear" when you cannot tell.\n'
        "- differential: 1 to 5 conditions, most likely first, each with a likelihood between 0 and 1; the "
        "likelihoods should add up to about 1. Use ONLY condition ids from this list:\n"
        f"{condition_list(vocab, audience)}\n"
        '- triage: "urgent" if anything suggests cancer or a fast-spreading infection, "routine" if a '
        'clinician should look at it at some point, "reassure" only if the picture clearly shows something '
        "harmless.\n\n"
        f"{_AUDIENCE_STYLE[audience]}"
    )


def user_prompt(question: str, body_site: str | None = None) -> str:
    """The turn's request; the user's own words are quoted so they cannot rewrite the instructions."""
    parts = ["Here is the photo."]
    if body_site:
        parts.append(f"Body site: {body_site}.")
    if question.strip():
        parts.append(f'The person asks: "{question.strip()}"')
    parts.append("Give the rationale, then the JSON block.")
    return " ".join(parts)


def history_messages(history: list[dict[str, str]], limit: int = HISTORY_TURNS) -> list[Message]:
    """Earlier turns as text-only chat messages (images of earlier turns are not re-sent)."""
    out: list[Message] = []
    for item in history[-limit:]:
        role = item.get("role")
        content = str(item.get("content") or "").strip()
        if role not in {"user", "assistant"} or not content:
            continue
        if out and out[-1]["role"] == role:  # chat templates want alternating roles: merge repeats
            out[-1]["content"][0]["text"] += "\n\n" + content
        else:
            out.append({"role": role, "content": [{"type": "text", "text": content}]})
    while out and out[0]["role"] != "user":  # templates also want the conversation to start with the user
        out.pop(0)
    if out and out[-1]["role"] == "user":  # the new user turn follows: fold a dangling user message away
        out.pop()
    return out


def build_messages(
    vocab: Vocabulary,
    audience: Audience,
    question: str,
    history: list[dict[str, str]] | None = None,
    *,
    body_site: str | None = None,
    system_as_user: bool = False,
) -> list[Message]:
    """System + carried-over history + the new user turn with one image item.

    ``system_as_user`` folds the instructions into the first user message, for chat templates that reject a
    system role (several LLaVA and Mistral templates do).
    """
    system = system_prompt(vocab, audience)
    past = history_messages(history or [])
    turn: Message = {
        "role": "user",
        "content": [{"type": "image"}, {"type": "text", "text": user_prompt(question, body_site)}],
    }
    messages = [{"role": "system", "content": [{"type": "text", "text": system}]}, *past, turn]
    return fold_system(messages) if system_as_user else messages


def fold_system(messages: list[Message]) -> list[Message]:
    """Move system text to the front of the first user message (for templates without a system role)."""
    system_text = "\n\n".join(_text_of(m) for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system_text or not rest:
        return rest
    first = rest[0]
    if isinstance(first["content"], str):
        first["content"] = system_text + "\n\n" + first["content"]
    else:
        items = [dict(item) for item in first["content"]]
        texts = [item for item in items if item["type"] == "text"]
        if texts:
            texts[0]["text"] = system_text + "\n\n" + texts[0]["text"]
        else:
            items.append({"type": "text", "text": system_text})
        first["content"] = items
    return rest


def _text_of(message: Message) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "\n\n".join(item["text"] for item in content if item.get("type") == "text")


def to_openai_messages(messages: list[Message], image_url: str | None) -> list[Message]:
    """Chat-completions shape: image items become ``image_url`` parts; text-only messages become strings."""
    out: list[Message] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, str):
            out.append({"role": message["role"], "content": content})
            continue
        parts: list[dict[str, Any]] = []
        for item in content:
            if item["type"] == "image":
                if image_url is not None:
                    parts.append({"type": "image_url", "image_url": {"url": item.get("url", image_url)}})
            elif item["type"] == "text":
                parts.append({"type": "text", "text": item["text"]})
        if all(p["type"] == "text" for p in parts):
            out.append({"role": message["role"], "content": "\n\n".join(p["text"] for p in parts)})
        else:
            out.append({"role": message["role"], "content": parts})
    return out
