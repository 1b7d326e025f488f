"""Which language a message is in, so a question in Spanish is never answered in English without a word.

DermChat's knowledge base and safety notices are in English. Until they are translated, a message in another
language gets a notice, in that language, saying that answers are in English and that a doctor or pharmacist
can help in their language. Detection uses ``langdetect`` (offline, profiles bundled; seeded, so a message is
always judged the same way). Short messages are unreliable to judge ("ok", "mole?"), so they count as English,
and so does text that is mostly medical names English shares with other languages.
"""

from __future__ import annotations

import functools
import re

MIN_LETTERS = 12
"""Fewer letters than this are too little to tell a language (langdetect guesses wildly on "hi" or "mole?")."""
MIN_PROBABILITY = 0.85
"""langdetect's own probability needed to call a message non-English."""
ENGLISH_SHARE = 0.25
"""Share of English function words ("is", "my", "after") from which a message counts as English whatever
langdetect says: it reads "Is melanoma contagious?" as Italian and "urticaria after penicillin" as Romanian,
because the medical words are Latin."""
WIDE_SCRIPT_RE = re.compile(r"[\u0600-\u06ff\u0900-\u097f\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
"""Scripts (Arabic, Devanagari, kana, CJK, Hangul) where one character carries about a word: counted thrice."""

NOTICES: dict[str, str] = {
    "es": "DermChat solo responde en inglés por ahora. Las respuestas siguientes están en inglés; un médico o "
    "farmacéutico puede ayudarle en español.",
    "fr": "DermChat ne répond qu'en anglais pour l'instant. Les réponses ci-dessous sont en anglais ; un médecin "
    "ou un pharmacien peut vous aider en français.",
    "de": "DermChat antwortet derzeit nur auf Englisch. Die folgenden Antworten sind auf Englisch; eine Ärztin, "
    "ein Arzt oder eine Apotheke kann Ihnen auf Deutsch helfen.",
    "it": "Per ora DermChat risponde solo in inglese. Le risposte qui sotto sono in inglese; un medico o un "
    "farmacista può aiutarla in italiano.",
    "pt": "Por enquanto o DermChat só responde em inglês. As respostas abaixo estão em inglês; um médico ou "
    "farmacêutico pode ajudar em português.",
    "nl": "DermChat antwoordt voorlopig alleen in het Engels. De antwoorden hieronder zijn in het Engels; een arts "
    "of apotheker kan u in het Nederlands helpen.",
    "pl": "DermChat na razie odpowiada tylko po angielsku. Poniższe odpowiedzi są po angielsku; lekarz lub "
    "farmaceuta pomoże po polsku.",
    "tr": "DermChat şimdilik yalnızca İngilizce yanıt veriyor. Aşağıdaki yanıtlar İngilizcedir; bir doktor veya "
    "eczacı size Türkçe yardımcı olabilir.",
    "ro": "Deocamdată DermChat răspunde doar în engleză. Răspunsurile de mai jos sunt în engleză; un medic sau un "
    "farmacist vă poate ajuta în română.",
    "ar": "يجيب DermChat باللغة الإنجليزية فقط حاليًا. الإجابات التالية باللغة الإنجليزية؛ يمكن للطبيب أو الصيدلي "
    "مساعدتك بالعربية.",
    "zh-cn": "DermChat 目前只用英语回答。以下回答为英文；医生或药剂师可以用中文帮助您。",
    "zh-tw": "DermChat 目前只用英文回答。以下回答為英文；醫生或藥劑師可以用中文協助您。",
    "hi": "DermChat अभी केवल अंग्रेज़ी में जवाब देता है। नीचे दिए गए जवाब अंग्रेज़ी में हैं; डॉक्टर या फ़ार्मासिस्ट "
    "हिंदी में आपकी मदद कर सकते हैं।",
    "ru": "Пока DermChat отвечает только по-английски. Ответы ниже на английском; врач или фармацевт помогут "
    "вам на русском.",
    "uk": "Поки що DermChat відповідає лише англійською. Відповіді нижче англійською; лікар або фармацевт "
    "допоможуть вам українською.",
}
GENERIC_NOTICE = (
    "DermChat only answers in English for now, and your message seems to be in another language "
    "({code}). The answers below are in English; a doctor or pharmacist can help in your language."
)


@functools.cache
def _detector_ready() -> bool:
    """Seed langdetect once (its sampling is random otherwise); False when the package is missing."""
    try:
        from langdetect import DetectorFactory
    except ImportError:
        return False
    DetectorFactory.seed = 0
    return True


def detect(text: str) -> str | None:
    """The message's language code when it is confidently not English ("es", "zh-cn"), else ``None``."""
    letters = re.sub(r"[\W\d_]+", "", text or "")
    weight = len(letters) + 2 * len(WIDE_SCRIPT_RE.findall(letters))
    if weight < MIN_LETTERS or _mostly_english(text) or not _detector_ready():
        return None
    from langdetect import LangDetectException, detect_langs

    try:
        best = detect_langs(text)[0]
    except LangDetectException:
        return None
    if best.lang == "en" or best.prob < MIN_PROBABILITY:
        return None
    language: str = best.lang
    return language


EXTRA_ENGLISH = frozenset(
    [
        "after",
        "before",
        "since",
        "again",
        "over",
        "under",
        "near",
        "around",
        "still",
        "every",
        "please",
        "help",
        "really",
    ]
)


@functools.cache
def _condition_words() -> frozenset[str]:
    """Words of condition names and synonyms: Latin-rooted terms that say nothing about the language."""
    from dermchat.vocabulary import get_vocabulary

    return frozenset(w for labels in get_vocabulary().all_names().values() for label in labels for w in label.split())


def _mostly_english(text: str) -> bool:
    from dermchat.knowledge.query import STOPWORDS

    words = [w for w in re.findall(r"[a-z']+", text.lower()) if w not in _condition_words()]
    if not words:
        return not WIDE_SCRIPT_RE.search(text)
    return sum(w in STOPWORDS or w in EXTRA_ENGLISH for w in words) / len(words) >= ENGLISH_SHARE


def notice(code: str) -> str:
    """ "Answers are in English", in the user's language when DermChat has the sentence, else in English."""
    return NOTICES.get(code) or GENERIC_NOTICE.format(code=code)
