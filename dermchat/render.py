"""Two renderings of one ``TurnResult``: plain words for patients, terms and numbers for clinicians.

Both are Markdown so the same text works in the Gradio chat, the CLI and exported study logs. Notices are
rendered from ``result.notices`` (filled by the safety policy), never from retrieved text, so they cannot
be dropped by an explainer. The web page's side panel (triage badge, differential bars, prediction set,
reference captions, contrast table, sources) is rendered here too, so the chat only lays it out.
"""

from __future__ import annotations

from typing import Any

from dermchat.morphology.describe import (
    STOLZ_CUTOFFS,
    STOLZ_WEIGHTS,
    TDS_CUTOFF,
    TDS_OFFSET,
    TDS_WEIGHTS,
    formula,
    stolz_asymmetry,
)
from dermchat.references.gallery import build_gallery
from dermchat.results import (
    Audience,
    Diagnosis,
    Explanation,
    MorphologyReport,
    QualityReport,
    Reference,
    Triage,
    TurnResult,
)
from dermchat.vocabulary import Vocabulary, get_vocabulary

TRIAGE_TEXT: dict[str, dict[str, str]] = {
    "patient": {
        "urgent": "Please see a doctor soon",
        "cant_assess": "This photo can't be assessed",
        "routine": "Worth showing to a doctor at a routine visit",
        "reassure": "Probably harmless, but keep an eye on it",
    },
    "clinician": {
        "urgent": "clinician review recommended",
        "cant_assess": "the image model abstained; no image-based triage",
        "routine": "non-urgent review",
        "reassure": "benign features predominate",
    },
}
TRIAGE_BADGE: dict[str, str] = {
    "urgent": "Urgent",
    "cant_assess": "Can't assess",
    "routine": "Routine",
    "reassure": "Low concern",
}
"""The tier in words on a coloured badge: the colour alone (once an emoji, an empty box without an emoji
font) never carries the meaning, and the word reads the same to screen readers and in the CLI."""
SAME_DAY_BADGE = "Urgent today"
SAME_DAY_TEXT = {"patient": "Please get medical help today", "clinician": "same day — red-flag symptoms"}
SAME_DAY_NEXT_STEP = (
    "Get medical help today: an urgent GP appointment, urgent care or the emergency department; "
    "call emergency services if you feel very unwell or it is getting worse fast."
)
TRIAGE_NEXT_STEP: dict[str, str] = {
    "urgent": "Book an appointment with a doctor or dermatologist within about two weeks — sooner if it is changing, bleeding or painful.",
    "cant_assess": "This photo can't rule anything out, so show the spot to a doctor: within about two weeks if it "
    "is new, changing, bleeding or itching, or if you are worried. A sharp, well-lit close-up may be "
    "readable, but don't wait for a better photo if the spot is changing.",
    "routine": "Mention it at your next routine visit, or sooner if it changes.",
    "reassure": "Keep an eye on it. If it changes in size, shape or colour, bleeds or itches, get it checked.",
}


def likelihood_words(p: float) -> str:
    """Plain-language likelihood for patients (numbers stay in the clinician view)."""
    if p >= 0.7:
        return "most likely"
    if p >= 0.4:
        return "quite possible"
    if p >= 0.15:
        return "possible"
    return "less likely"


def render(
    result: TurnResult, audience: str | None = None, vocab: Vocabulary | None = None, *, html: bool = False
) -> str:
    """The answer as Markdown; ``html=True`` (the web page) draws the triage tier as a coloured badge."""
    audience = audience or result.audience
    vocab = vocab or get_vocabulary()
    parts: list[str] = []
    if result.message:
        parts.append(result.message)
    if result.status in {"retake", "not_skin"} and result.quality is not None:
        parts.append(render_quality(result.quality, audience))
    if result.diagnosis is not None and result.status != "followup":
        parts.append(render_diagnosis(result.diagnosis, audience, vocab))
    if result.morphology is not None and result.status != "followup":
        parts.append(render_morphology(result.morphology, audience, vocab))
    if result.triage is not None and result.status != "followup":
        parts.append(render_triage(result.triage, audience, vocab, html=html))
    if result.second_opinion is not None and audience == "clinician":
        parts.append(render_second_opinion(result, vocab))
    if result.explanation is not None:
        parts.append(render_explanation(result, audience, vocab))
    # A follow-up is about the same photo: its quality table was shown with the first answer already.
    if (
        result.quality is not None
        and audience == "clinician"
        and result.status not in {"retake", "not_skin", "followup"}
    ):
        parts.append(render_quality(result.quality, audience))
    if result.notices:
        parts.append("\n".join(f"> ⚠️ {notice}" for notice in result.notices))
    if audience == "clinician" and result.providers:
        parts.append(render_provenance(result))
    return "\n\n".join(p for p in parts if p.strip())


def triage_heading(triage: Triage, audience: str) -> str:
    """The tier in a few words (the chat and the side panel): same-day red flags say "today", not "soon"."""
    return SAME_DAY_TEXT[audience] if triage.same_day else TRIAGE_TEXT[audience][triage.tier]


def triage_line(tier: str, audience: str, *, html: bool = False, same_day: bool = False) -> str:
    """The triage tier with its words: a badge (styled by the ``triage-<tier>`` class) on the web page, a
    bracketed word elsewhere (CLI, exported logs). Same-day red flags say "today"."""
    badge = SAME_DAY_BADGE if same_day else TRIAGE_BADGE[tier]
    text = SAME_DAY_TEXT[audience] if same_day else TRIAGE_TEXT[audience][tier]
    if html:
        return f'<span class="triage-badge triage-{tier}">{badge}</span> **{text}**'
    return f"**[{badge}] {text}**"


def render_triage(triage: Triage, audience: str, vocab: Vocabulary, html: bool = False) -> str:
    """The tier line: plain words and what to do for patients; reason, guidance pathway and sources for clinicians."""
    line = triage_line(triage.tier, audience, html=html, same_day=triage.same_day)
    if audience == "clinician":
        line += f" — {triage.reason}"
        if triage.pathway:
            line += f"\n\nGuidance: {triage.pathway}" + (
                " (" + ", ".join(triage.sources) + ")" if triage.sources else ""
            )
        return line
    why = urgent_reason_for_patient(triage.drivers, vocab)
    next_step = SAME_DAY_NEXT_STEP if triage.same_day else (triage.advice or TRIAGE_NEXT_STEP[triage.tier])
    return line + f"\n\n{why + ' ' if why else ''}{next_step}"


def reference_caption(ref: Reference, vocab: Vocabulary | None = None, audience: str = "patient") -> str:
    """A reference image's caption: the condition's full name first (a grid that cuts captions still shows
    which condition it is — "Real image: Mela…" could be melanoma or a mole), then real or synthetic."""
    vocab = vocab or get_vocabulary()
    name = vocab.get(ref.condition_id).name(audience) if ref.condition_id in vocab else ref.condition_id
    kind = "SYNTHETIC illustration (AI-generated, not a real photo)" if ref.synthetic else "real photo"
    return f"{name} — {kind}"


def urgent_reason_for_patient(drivers: list[str], vocab: Vocabulary) -> str:
    """Why a patient is told to see a doctor, in plain words: the alarm may come from a condition that is not
    the most likely one, and an unexplained "see a doctor soon" is both alarming and easy to dismiss."""
    names = [vocab.get(c).patient_name for c in drivers if c in vocab]
    if not names:
        return ""
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"Why: {listed} can't be ruled out from this photo."


DIFFERENTIAL_SHOWN = 7
IN_SET_MARK = "✓"
LIKELY_ONE_OF = "**The answer is likely one of:** "
CANT_ASSESS_PANEL = "**This photo can't be assessed:** no list of likely conditions is shown."


def prediction_set_names(diagnosis: Diagnosis, audience: str, vocab: Vocabulary) -> list[str]:
    """The conditions in the prediction set, named for ``audience``."""
    return [vocab.get(c).name(audience) for c in diagnosis.prediction_set]


def render_diagnosis(diagnosis: Diagnosis, audience: str, vocab: Vocabulary) -> str:
    if diagnosis.abstained:
        return render_cant_assess(diagnosis, audience)
    if not diagnosis.differential:
        shown = diagnosis.rationale if audience == "clinician" or diagnosis.rationale_audience == "patient" else ""
        return "**No structured differential** — " + (shown or "the model gave no usable list.")
    names = prediction_set_names(diagnosis, audience, vocab)
    lines: list[str] = []
    if audience == "clinician":
        lines.append("| Condition | ICD-10 | Probability | In set |")
        lines.append("|---|---|---:|:---:|")
        for entry in diagnosis.top(DIFFERENTIAL_SHOWN):
            cond = vocab.get(entry.condition_id)
            mark = IN_SET_MARK if entry.condition_id in diagnosis.prediction_set else ""
            lines.append(f"| {cond.clinician_name} | {cond.icd10 or ''} | {entry.probability:.1%} | {mark} |")
        coverage = f" ({diagnosis.coverage:.0%} prediction set)" if diagnosis.coverage else ""
        lines.append(f"\nPrediction set{coverage}: {', '.join(names) or '—'}")
        if diagnosis.rationale:
            lines.append(f"\nRationale: {diagnosis.rationale}")
        if diagnosis.morphology:
            lines.append("\nMorphology: " + "; ".join(f"{k}: {v}" for k, v in diagnosis.morphology.items()))
    else:
        if names:
            lines.append(LIKELY_ONE_OF + ", ".join(names) + ".")
        for entry in diagnosis.top(3):
            lines.append(f"- {vocab.get(entry.condition_id).patient_name}: {likelihood_words(entry.probability)}")
        if diagnosis.rationale and diagnosis.rationale_audience == "patient":
            lines.append(f"\nWhat the image model noticed: {diagnosis.rationale}")
        lines.append("\nThese are computer estimates from one photo, not certainties.")
    return "\n".join(lines)


CANT_ASSESS_SCOPE = {
    "patient": "DermChat's image model only knows dermoscope close-ups (photos taken through a skin magnifier) "
    "of 7 kinds of skin spot, so it gives no list of likely conditions for this photo. That is not a "
    "sign that all is well.",
    "clinician": "Scope: ham-cnn-type models are trained on HAM10000 dermoscopy (7 pigmented lesion classes); no "
    "differential is shown because the model abstained. Judge the lesion clinically.",
}


def render_cant_assess(diagnosis: Diagnosis, audience: str) -> str:
    """Outcome 2: why the photo can't be assessed and what that means, with no differential shown as an answer."""
    why = diagnosis.abstain_reason or "the image model could not read it"
    text = f"**Why it can't be assessed:** {why}.\n\n{CANT_ASSESS_SCOPE['clinician' if audience == 'clinician' else 'patient']}"
    if audience == "clinician" and diagnosis.rationale:
        text += f"\n\nRationale: {diagnosis.rationale}"
    return text


MORPHOLOGY_CAVEAT = (
    "This is a computer's description of one photo and can be wrong: light, hair, focus and the "
    "camera all change how a spot looks."
)
NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six")


def render_morphology(report: MorphologyReport, audience: str, vocab: Vocabulary | None = None) -> str:
    """What the photo shows: a sentence or two for patients, the ABCD table (and any disagreement) for clinicians."""
    d = report.descriptors
    if audience == "clinician":
        parts = [morphology_table(d)]
        if report.disagrees and report.consistency:
            parts.append(disagreement_line(report.consistency, vocab or get_vocabulary()))
    else:
        parts = [f"**What the photo shows:** {describe_for_patient(d)} {MORPHOLOGY_CAVEAT}"]
    if report.comparison:
        parts.append(render_comparison(report.comparison, audience))
    return "\n\n".join(parts)


def describe_for_patient(d: dict[str, Any]) -> str:
    """One or two plain sentences: shape, edge, colours ("uneven in shape and has three colours: ...")."""
    if not d.get("lesion_found"):
        return "I couldn't make out a distinct spot in this photo to describe."
    shape = ["fairly even in shape", "a little uneven in shape", "uneven in shape"][min(stolz_asymmetry(d), 2)]
    colours = list(d.get("colours") or [])
    if colours:
        listed = colours[0] if len(colours) == 1 else ", ".join(colours[:-1]) + " and " + colours[-1]
        count = NUMBER_WORDS[len(colours)] if len(colours) < len(NUMBER_WORDS) else str(len(colours))
        colour_text = f"has {count} colour{'s' if len(colours) > 1 else ''}: {listed}"
    else:
        colour_text = "has no clear colour of its own against the skin"
    sentence = f"The spot is {shape} and {colour_text}."
    extras = []
    if float(d.get("border", 0)) >= 4:
        extras.append("its edge stops sharply in several places")
    if d.get("blue_white_veil"):
        extras.append("part of it has a bluish-white haze")
    if extras:
        sentence += " " + " and ".join(extras).capitalize() + "."
    return sentence


def morphology_table(d: dict[str, Any]) -> str:
    """The dermoscopic ABCD descriptors with their scales, the TDS-style score and Stolz's TDS."""
    if not d.get("lesion_found"):
        return "**Morphology (ABCD)** — no distinct lesion found in the photo; nothing measured."
    mm = f" ({d['diameter_mm']:.1f} mm)" if d.get("diameter_mm") else ""
    veil = f"yes ({d.get('veil_share', 0):.0%} of the lesion)" if d.get("blue_white_veil") else "no"
    rows = [
        (
            "Asymmetry (A)",
            f"{float(d['asymmetry']):.2f} (Stolz score {stolz_asymmetry(d)}; shape "
            f"{d.get('asymmetry_shape', 0):.2f}, colour ΔE {d.get('asymmetry_colour', 0):.1f})",
            "0-2 axes",
        ),
        (
            "Border (B)",
            f"{d['border']:.1f} abruptness over 8 segments (irregularity {d.get('border_irregularity', 0):.2f})",
            "0-8",
        ),
        ("Colours (C)", ", ".join(d.get("colours") or []) or "none ≥ 5%", "1-6"),
        ("Structures (D)", ", ".join(d.get("structures") or []) or "none detected", "1-5"),
        ("Blue-white veil", veil, ""),
        ("Longest diameter", f"{d['diameter_px']:.0f} px{mm}", ""),
        ("Lesion area", f"{d['mask_area_share']:.0%} of the frame", ""),
        (
            "TDS-style score",
            f"{d['tds']:.2f} ({d.get('tds_band') or '—'})",
            f"{formula(TDS_WEIGHTS, TDS_OFFSET, '.2f')} (re-fitted); >{TDS_CUTOFF:g} highly suspicious",
        ),
        (
            "Stolz TDS",
            f"{d.get('tds_stolz', 0):.2f} ({d.get('tds_stolz_band') or '—'})",
            f"{formula(STOLZ_WEIGHTS, 0.0, 'g')}; >{STOLZ_CUTOFFS[1]:g} highly suspicious",
        ),
    ]
    lines = [
        "**Morphology (dermoscopic ABCD, automated from the photo)**",
        "",
        "| Feature | Value | Scale |",
        "|---|---|---|",
    ]
    lines.extend(f"| {name} | {value} | {scale} |" for name, value, scale in rows)
    lines.extend(f"\n<sub>{note}</sub>" for note in d.get("notes") or [])
    return "\n".join(lines)


def disagreement_line(consistency: dict[str, Any], vocab: Vocabulary) -> str:
    top = consistency.get("top_condition")
    name = vocab.get(top).clinician_name if top and top in vocab else str(top)
    added = ", ".join(vocab.get(c).clinician_name for c in consistency.get("added_to_set") or [] if c in vocab)
    return (
        f"**⚠️ Observation–diagnosis disagreement:** benign top condition ({name}) but "
        + "; ".join(consistency.get("features") or [])
        + (f". Added to the set: {added}." if added else ".")
        + " Tier raised to at least urgent review."
    )


def render_comparison(comparison: dict[str, Any], audience: str) -> str:
    """Then vs now: a table for clinicians, the plain-words summary (with the same-way warning) for both."""
    head = "**Compared with the earlier photo:** "
    if audience != "clinician":
        return head + str(comparison.get("summary", ""))
    rows = ["| | Then | Now |", "|---|---|---|"]
    for key, (then, now) in (comparison.get("then_vs_now") or {}).items():
        as_list = isinstance(then, list)
        rows.append(
            f"| {key.replace('_', ' ')} | {_comparison_cell(then, as_list)} | {_comparison_cell(now, as_list)} |"
        )
    change = f"area {comparison.get('area_change', 0):+.0%}"
    return head + f"{change}. {comparison.get('summary', '')}\n\n" + "\n".join(rows)


def _comparison_cell(value: Any, as_list: bool) -> str:
    """One then/now cell. Whether a row is a list is decided by its "then" value, for both cells, so the two
    columns of a row are always written the same way."""
    return (", ".join(value) or "—") if as_list else f"{value}"


def render_quality(report: QualityReport, audience: str) -> str:
    if audience == "clinician":
        rows = ["| Aspect | Score (100 = no problem) | Problem | Detail |", "|---|---:|:---:|---|"]
        for reason in report.reasons:
            rows.append(
                f"| {reason.label} | {reason.score:.0f} | {'⚠️' if reason.problem else ''} | {reason.clinician_detail} |"
            )
        brisque = f", BRISQUE {report.brisque:.1f} (lower is better)" if report.brisque is not None else ""
        head = (
            f"**Image quality {report.score:.0f}/100, higher is better ({report.band}{brisque}; "
            f"threshold {report.threshold:.0f})**"
        )
        kind = f"\n\nDermoscopy check: {report.dermoscopy_detail}" if report.dermoscopy_detail else ""
        return head + "\n\n" + "\n".join(rows) + kind
    tips = [r.patient_tip for r in report.problems(2) if r.patient_tip]
    if not tips:
        return ""
    return "**Tips for a better photo:**\n" + "\n".join(f"- {tip}" for tip in tips)


def render_explanation(result: TurnResult, audience: str, vocab: Vocabulary) -> str:
    explanation = result.explanation
    assert explanation is not None
    parts = [p for p in (explanation.lead, explanation.text) if p]
    if explanation.conditions_to_consider:
        heading = "**Conditions to discuss with a clinician** (a list to talk through, not probabilities):"
        items = []
        for item in explanation.conditions_to_consider:
            name = vocab.get(item.condition_id).name(audience) if item.condition_id in vocab else item.condition_id
            items.append(f"- **{name}**" + (f" — {item.why}" if item.why else ""))
            if item.red_flags:
                items.append("  - Red flags: " + " ".join(item.red_flags))
        parts.append(heading + "\n" + "\n".join(items))
    if explanation.intake_questions:
        parts.append("**To help, could you tell me:**\n" + "\n".join(f"- {q}" for q in explanation.intake_questions))
    if explanation.citations:
        parts.append("**Sources:** " + " · ".join(source_links(explanation)))
    return "\n\n".join(parts)


def source_links(explanation: Explanation) -> list[str]:
    """One Markdown link per citation marker (a marker can cite several sentences)."""
    unique = {cite.marker: cite for cite in explanation.citations}
    return [f"{cite.marker} [{cite.title}]({cite.url})" for cite in unique.values()]


def render_second_opinion(result: TurnResult, vocab: Vocabulary) -> str:
    second = result.second_opinion
    assert second is not None
    agrees = second.extra.get("agrees_on_top")
    verdict = {
        True: "agrees on the top condition",
        False: "DISAGREES on the top condition",
        None: "could not be compared",
    }[agrees]
    top = ", ".join(f"{vocab.get(e.condition_id).clinician_name} {e.probability:.0%}" for e in second.top(3))
    return f"**Second opinion ({second.provider_id})** {verdict}: {top or 'no differential'}"


def render_provenance(result: TurnResult) -> str:
    bits = []
    for capability, ref in result.providers.items():
        refs = ref if isinstance(ref, list) else [ref]
        bits.append(f"{capability}: " + ", ".join(f"{r.id} {r.version}".strip() for r in refs))
    timing = ", ".join(f"{k} {v:.0f} ms" for k, v in result.timings_ms.items())
    return f"<sub>Providers — {'; '.join(bits)}. Timings — {timing}.</sub>"


# -- the side panel of the web page ------------------------------------------------------------------------------
def shows_differential(diagnosis: Diagnosis | None) -> bool:
    """A differential is drawn only when there is one and the model did not abstain (an abstained list is no answer)."""
    return diagnosis is not None and bool(diagnosis.differential) and not diagnosis.abstained


def triage_badge(triage: Triage | None, audience: str) -> str:
    """The panel's triage badge; empty when the turn has no tier (a new photo must not keep the last one's)."""
    return triage_line(triage.tier, audience, html=True, same_day=triage.same_day) if triage is not None else ""


def differential_bars(
    diagnosis: Diagnosis | None, audience: str, vocab: Vocabulary | None = None
) -> dict[str, float] | None:
    """The top conditions' calibrated probabilities as labelled bars, the prediction set's marked; None: no bars."""
    if diagnosis is None or not shows_differential(diagnosis):
        return None
    vocab = vocab or get_vocabulary()
    bars: dict[str, float] = {}
    for entry in diagnosis.top(DIFFERENTIAL_SHOWN):
        mark = f" {IN_SET_MARK}" if entry.condition_id in diagnosis.prediction_set else ""
        bars[f"{vocab.get(entry.condition_id).name(audience)}{mark}"] = entry.probability
    return bars


def prediction_set_panel(diagnosis: Diagnosis | None, audience: str, vocab: Vocabulary | None = None) -> str:
    """Under the bars: the prediction set in words, or why there is none for this photo."""
    if diagnosis is None:
        return ""
    if not shows_differential(diagnosis):
        return CANT_ASSESS_PANEL if diagnosis.abstained else ""
    names = prediction_set_names(diagnosis, audience, vocab or get_vocabulary())
    return f"{LIKELY_ONE_OF}{', '.join(names)}  \n<sub>{IN_SET_MARK} = in the prediction set</sub>" if names else ""


def reference_gallery(result: TurnResult, audience: str, vocab: Vocabulary | None = None) -> list[tuple[str, str]]:
    """The reference images with their captions, as (path, caption) pairs."""
    vocab = vocab or get_vocabulary()
    return [(ref.path, reference_caption(ref, vocab, audience)) for ref in result.references]


def render_contrast(result: TurnResult, audience: str) -> str:
    """'How to tell them apart': the top differentials side by side with features from the knowledge base."""
    reader: Audience = "clinician" if audience == "clinician" else "patient"
    gallery = build_gallery(result, reader)
    if not gallery.columns:
        return ""
    header = (
        "| | "
        + " | ".join(
            f"**{col.name}**" + (f" {IN_SET_MARK}" if col.in_prediction_set else "") for col in gallery.columns
        )
        + " |"
    )
    lines = ["**How to tell them apart**", "", header, "|---" * (len(gallery.columns) + 1) + "|"]
    depth = max(len(col.features) for col in gallery.columns)
    for row in range(depth):
        cells = [col.features[row].replace("|", "/") if row < len(col.features) else "" for col in gallery.columns]
        lines.append("| " + ("Looks like" if row == 0 else "") + " | " + " | ".join(cells) + " |")
    images = [
        f"{sum(i.kind == 'real' for i in col.items)} real / {sum(i.kind == 'synthetic' for i in col.items)} synthetic"
        for col in gallery.columns
    ]
    lines.append("| Images | " + " | ".join(images) + " |")
    lines.append("")
    lines.append(f"<sub>{gallery.legend}</sub>")
    lines.extend(f"<sub>{note}</sub>" for note in gallery.notes)
    return "\n".join(lines)


def render_sources(result: TurnResult) -> str:
    """The explanation's sources as a list of links; empty when it cites none."""
    if result.explanation is None or not result.explanation.citations:
        return ""
    return "\n".join(["**Sources**", *(f"- {link}" for link in source_links(result.explanation))])
