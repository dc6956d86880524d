"""Language codes, mapped once: display names, script facts, and the codes each backend wants."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import AlignheadsError


@dataclass(frozen=True)
class Language:
    """One language as the toolkit sees it."""

    code: str  # ISO 639-1, the canonical code used everywhere inside alignheads
    name: str  # English name, as shown in prompts ("[Current English ASR prefix]")
    spaced: bool = True  # False for scripts written without spaces between words (zh, ja)
    whisper: str | None = None  # code faster-whisper expects
    qwen: str | None = None  # language name Qwen3-ASR expects
    sacrebleu_tokenize: str = "13a"


LANGUAGES: dict[str, Language] = {
    lang.code: lang
    for lang in (
        Language("en", "English", whisper="en", qwen="English"),
        Language("de", "German", whisper="de", qwen="German"),
        Language("it", "Italian", whisper="it", qwen="Italian"),
        Language("fr", "French", whisper="fr", qwen="French"),
        Language("es", "Spanish", whisper="es", qwen="Spanish"),
        Language("pt", "Portuguese", whisper="pt", qwen="Portuguese"),
        Language("nl", "Dutch", whisper="nl", qwen="Dutch"),
        Language("cs", "Czech", whisper="cs", qwen="Czech"),
        Language("ru", "Russian", whisper="ru", qwen="Russian"),
        Language("ar", "Arabic", whisper="ar", qwen="Arabic"),
        Language("zh", "Chinese", spaced=False, whisper="zh", qwen="Chinese", sacrebleu_tokenize="zh"),
        Language("ja", "Japanese", spaced=False, whisper="ja", qwen="Japanese", sacrebleu_tokenize="ja-mecab"),
    )
}

# Spellings users and other tools pass for the same language.
_ALIASES = {
    "zh-cn": "zh", "zh-hans": "zh", "zh-tw": "zh", "zh-hant": "zh", "cmn": "zh", "chinese": "zh",
    "en-us": "en", "en-gb": "en", "english": "en", "de-de": "de", "german": "de",
    "it-it": "it", "italian": "it", "ja-jp": "ja", "japanese": "ja",
}


def get_language(code: str) -> Language:
    """Resolve a language code or alias (`zh-CN`, `zh_Hans`, `German`) to a Language."""
    key = code.strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in LANGUAGES:
        known = ", ".join(sorted(LANGUAGES))
        raise AlignheadsError(f"unknown language {code!r}; known codes: {known}")
    return LANGUAGES[key]


def target_units(text: str, lang: str) -> list[str]:
    """Latency units of `text`: words for spaced languages, non-space characters for zh/ja."""
    if get_language(lang).spaced:
        return text.split()
    return [c for c in text if not c.isspace()]
