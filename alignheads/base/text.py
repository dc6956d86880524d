"""Detokenised text: the characters a prompt shows for a word list, with the span of every word."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .languages import get_language


@dataclass(frozen=True)
class Surface:
    """Detokenised text of a word list with the character span of every word: text[s:e] == word."""

    text: str
    spans: tuple[tuple[int, int], ...]



_CLOSING = set(".,;:!?%)]}»”…")
_OPENING = set("([{«“„¿¡")
_CLITICS = {"'s", "'re", "'ve", "'ll", "'d", "'m", "n't"}
_APOSTROPHES = ("'", "’")
_TRUNCATED = {"po'", "mo'", "be'"}  # Italian apocopes that keep their space (un po' di)


def _is_clitic(word: str, prev: str) -> bool:
    low = word.lower().replace("’", "'")
    return low in _CLITICS or (low == "'" and prev[-1:] in ("s", "S"))  # plural possessive: states '


def _is_latin(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def surface(words: Sequence[str], lang: str) -> Surface:
    """Detokenise words into the text a prompt shows, keeping the character span of every word."""
    language = get_language(lang)
    eliding = language.elides
    parts: list[str] = []
    spans: list[tuple[int, int]] = []
    pos, glue, in_quote, low_quote, prev = 0, True, False, False, ""
    for word in words:
        if word == '"':  # straight quotes alternate open/close
            closing, in_quote = in_quote, not in_quote
        elif word == "“" and low_quote:  # German „…“ closes with the sign that opens elsewhere
            closing, low_quote = True, False
        else:
            closing = bool(word) and (set(word) <= _CLOSING or _is_clitic(word, prev))
            low_quote = low_quote or word == "„"
        if not glue and not closing and (language.spaced or (_is_latin(prev[-1:]) and _is_latin(word[:1]))):
            parts.append(" ")
            pos += 1
        parts.append(word)
        spans.append((pos, pos + len(word)))
        pos += len(word)
        elided = eliding and len(word) > 1 and word.endswith(_APOSTROPHES)
        opening = not closing and (word == '"' or (bool(word) and set(word) <= _OPENING))
        glue = opening or (elided and word.lower().replace("’", "'") not in _TRUNCATED)
        prev = word
    return Surface("".join(parts), tuple(spans))
