"""The body sites offered for the optional details about the spot (age, sex, body site).

The values the widgets send become the request's ``PatientDetails`` through ``dermchat.conversation.patient_details``,
the same for the chat and the API.
"""

from __future__ import annotations

# A plain site is its own label; a (label, value) pair shows the patient's words and sends the dataset's site.
BODY_SITES: list[str | tuple[str, str]] = [
    "face",
    "scalp",
    "ear",
    "neck",
    "chest",
    "abdomen",
    "back",
    "upper extremity",
    "hand",
    "lower extremity",
    "foot",
    ("palm or sole", "acral"),
    "genital",
]
