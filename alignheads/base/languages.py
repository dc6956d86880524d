"""Language codes, mapped once: display names, script facts, and the codes each backend wants.

Any ISO 639 / BCP-47 code resolves through langcodes (with language-data for names): `ro`, `ron`,
`pt-BR`, `zh-Hant`, `iw` or the English name `Romanian`. The script rules below are the only
per-language table; every other language gets the default (space-separated words, no elision,
sacrebleu's 13a tokenizer).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import langcodes

from .errors import AlignheadsError


@dataclass(frozen=True)
class Language:
    """One language as the toolkit sees it."""

    code: str  # base language subtag (ISO 639-1 where one exists), the canonical code used everywhere inside
    name: str  # English name, as shown in prompts ("[Current English ASR prefix]")
    spaced: bool = True  # False for scripts written without spaces between words (zh, ja, th, ...)
    whisper: str | None = None  # code faster-whisper expects; None when Whisper does not know the language
    qwen: str | None = None  # language name Qwen3-ASR expects (the package checks its own list)
    sacrebleu_tokenize: str = "13a"
    elides: bool = False  # words elide onto the next one (dell'isola, l'homme): no space after the apostrophe


@dataclass(frozen=True)
class ScriptRule:
    spaced: bool = True
    elides: bool = False
    sacrebleu_tokenize: str = "13a"


# The one table of script rules; languages not listed get ScriptRule().
SCRIPT_RULES: dict[str, ScriptRule] = {
    "zh": ScriptRule(spaced=False, sacrebleu_tokenize="zh"),
    "yue": ScriptRule(spaced=False, sacrebleu_tokenize="zh"),
    "ja": ScriptRule(spaced=False, sacrebleu_tokenize="ja-mecab"),
    "th": ScriptRule(spaced=False, sacrebleu_tokenize="char"),
    "lo": ScriptRule(spaced=False, sacrebleu_tokenize="char"),
    "km": ScriptRule(spaced=False, sacrebleu_tokenize="char"),
    "my": ScriptRule(spaced=False, sacrebleu_tokenize="char"),
    "it": ScriptRule(elides=True),
    "fr": ScriptRule(elides=True),
    "ca": ScriptRule(elides=True),
}

# Spellings langcodes would keep apart but the toolkit treats as one language.
_ALIASES = {"cmn": "zh"}


@functools.cache
def _whisper_codes() -> frozenset[str]:
    """Language codes the installed faster-whisper accepts (its tokenizer's list)."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES  # the list faster-whisper itself validates against

    return frozenset(_LANGUAGE_CODES)


def _parse(code: str) -> langcodes.Language:
    text = code.strip().replace("_", "-")
    try:
        tag = langcodes.Language.get(text)
    except (langcodes.LanguageTagError, ValueError):
        tag = None
    if tag is None or not tag.is_valid() or tag.language in (None, "und"):
        try:
            tag = langcodes.find(text)  # an English (or native) language name: "Romanian", "Deutsch"
        except LookupError:
            raise AlignheadsError(f"unknown language {code!r}") from None
    return tag


@functools.cache
def _resolve(key: str) -> Language:
    tag = _parse(key)
    base = _ALIASES.get(tag.language, tag.language)
    name = langcodes.Language.get(base).display_name("en")
    rule = SCRIPT_RULES.get(base, ScriptRule())
    whisper = {"fil": "tl"}.get(base, base)  # Whisper still calls Filipino by its old code
    return Language(base, name, spaced=rule.spaced, whisper=whisper if whisper in _whisper_codes() else None,
                    qwen=name, sacrebleu_tokenize=rule.sacrebleu_tokenize, elides=rule.elides)


def get_language(code: str) -> Language:
    """Resolve a language code, tag or name (`ro`, `zh-CN`, `zh_Hans`, `German`) to a Language."""
    if not isinstance(code, str) or not code.strip():
        raise AlignheadsError(f"unknown language {code!r}: expected a language code such as 'en'")
    try:
        return _resolve(code.strip().lower())
    except AlignheadsError:
        raise AlignheadsError(f"unknown language {code!r}: expected an ISO 639 / BCP-47 code such as 'en', 'ro' "
                              "or 'zh-Hans', or a language name") from None


def parse_direction(direction: str) -> tuple[str, str]:
    """'en-de' -> ('en', 'de') with both codes resolved; a clear error for anything else."""
    parts = direction.split("-") if isinstance(direction, str) else []
    if len(parts) != 2 or not all(parts):
        raise AlignheadsError(f"direction must look like 'en-de', got {direction!r}")
    try:
        src, tgt = (get_language(x).code for x in parts)
    except AlignheadsError as e:
        raise AlignheadsError(f"direction {direction!r}: {e}") from None
    return src, tgt


def target_units(text: str, lang: str) -> list[str]:
    """Latency units of `text`: words for spaced languages, non-space characters for zh/ja."""
    if get_language(lang).spaced:
        return text.split()
    return [c for c in text if not c.isspace()]
