"""Language codes xdr accepts, with the English names that generation prompts use.

ISO 639-1 codes (plus a few TyDi/SWIM-IR codes). An unknown code is an error, not a silent pass-through:
a typo such as ``jp`` for ``ja`` would otherwise create an empty language bucket in every report.
"""

from __future__ import annotations

from xdr.errors import XdrError

LANGUAGES: dict[str, str] = {
    "af": "Afrikaans", "am": "Amharic", "ar": "Arabic", "as": "Assamese", "az": "Azerbaijani",
    "be": "Belarusian", "bg": "Bulgarian", "bn": "Bengali", "bs": "Bosnian", "ca": "Catalan",
    "cs": "Czech", "cy": "Welsh", "da": "Danish", "de": "German", "el": "Greek", "en": "English",
    "eo": "Esperanto", "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian",
    "fi": "Finnish", "fr": "French", "ga": "Irish", "gl": "Galician", "gu": "Gujarati", "ha": "Hausa",
    "he": "Hebrew", "hi": "Hindi", "hr": "Croatian", "ht": "Haitian Creole", "hu": "Hungarian",
    "hy": "Armenian", "id": "Indonesian", "ig": "Igbo", "is": "Icelandic", "it": "Italian",
    "ja": "Japanese", "jv": "Javanese", "ka": "Georgian", "kk": "Kazakh", "km": "Khmer", "kn": "Kannada",
    "ko": "Korean", "ku": "Kurdish", "ky": "Kyrgyz", "la": "Latin", "lo": "Lao", "lt": "Lithuanian",
    "lv": "Latvian", "mg": "Malagasy", "mk": "Macedonian", "ml": "Malayalam", "mn": "Mongolian",
    "mr": "Marathi", "ms": "Malay", "my": "Burmese", "ne": "Nepali", "nl": "Dutch", "no": "Norwegian",
    "or": "Odia", "pa": "Punjabi", "pl": "Polish", "ps": "Pashto", "pt": "Portuguese", "ro": "Romanian",
    "ru": "Russian", "sa": "Sanskrit", "sd": "Sindhi", "si": "Sinhala", "sk": "Slovak", "sl": "Slovenian",
    "so": "Somali", "sq": "Albanian", "sr": "Serbian", "su": "Sundanese", "sv": "Swedish",
    "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish",
    "ug": "Uyghur", "uk": "Ukrainian", "ur": "Urdu", "uz": "Uzbek", "vi": "Vietnamese", "xh": "Xhosa",
    "yi": "Yiddish", "yo": "Yoruba", "zh": "Chinese", "zu": "Zulu",
}

XQUAD_R_DEV_LANGS: tuple[str, ...] = ("de", "el", "es", "hi", "tr", "vi")


def normalize_lang(code: str) -> str:
    """Canonical form of a language code; strips the whitespace XOR's train file puts before ``ar``."""
    c = code.strip().lower().replace("_", "-").split("-")[0]
    if c not in LANGUAGES:
        raise XdrError(f"unknown language code {code!r}; expected an ISO 639-1 code such as 'ar', 'ja', 'te'")
    return c


def parse_langs(csv: str | None, option: str = "--langs") -> list[str] | None:
    """A comma-separated language list, normalised and de-duplicated in order; None when not given.

    Every command that takes a language list parses it here, so ``" DE , el"`` and ``de-DE,el`` mean the
    same everywhere, and a typo or an empty list fails before any work starts, naming ``option``.
    """
    if csv is None:
        return None
    codes: list[str] = []
    for part in csv.split(","):
        if part.strip():
            try:
                codes.append(normalize_lang(part.strip()))
            except XdrError as e:
                raise XdrError(f"{option}: {e}") from None
    if not codes:
        raise XdrError(f"{option}: no language codes in {csv!r}")
    return list(dict.fromkeys(codes))


def language_name(code: str) -> str:
    return LANGUAGES[normalize_lang(code)]
