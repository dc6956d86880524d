"""Where sentences end: in recognised source words (the stabiliser, the cascade) and in draft text (the policies).

A full stop is not always a sentence end: "Mr. Smith", "the U.S. economy", "z. B. die", "e.g. this". The two
sides err in opposite directions on purpose:

- source words (`is_sentence_final`, `split_sentences`): a false end cuts a sentence in two and the translator
  finishes a fragment as if it were whole, so titles, initials and dotted acronyms never end a sentence and a
  mark followed by a lower-case word is not an end (merging two sentences only costs latency);
- draft text (`sentence_end`): a missed end lets a policy commit the end of a sentence before its source is
  heard, so a mark counts as an end unless the text after it shows the sentence goes on.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MARKS = ".?!。？！"  # sentence-final marks of recognised words (the stabiliser's default)
# Closing -> opening bracket (quotes are left out: the same mark opens and closes, or differs by language).
BRACKETS = dict(zip(")]}）】」』》", "([{（【「『《", strict=True))
CLOSERS = "\"'”’»" + "".join(BRACKETS)  # may follow the mark: `stop."`, `停。」`
_OPENERS = "\"'“‘«" + "".join(BRACKETS.values())

# Abbreviations (lower case, without the final full stop) that do not end a sentence in ordinary text; "etc.",
# "usw." and "ecc." are left out because they often do.
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st mt jr vs approx fig dept "  # en
    "bzw vgl ca nr hr frl evtl ggf inkl bspw sog str "  # de
    "sig sigg dott ing avv pag "  # it
    "mme mlle mm cf env "  # fr
    "sra srta dra ud uds pág".split()  # es
)
_ACRONYM = re.compile(r"(?:[^\W\d_]\.){2,}")  # "U.S.", "e.g.", "d.h.", "a.m."

# Draft text: a run of sentence-final marks (closing quotes/brackets may follow) that no letter or digit
# continues ("2.3", "U.S" are not ends), or a CJK full stop / question / exclamation mark anywhere.
_DRAFT_END = re.compile(rf"[.!?…]+[{re.escape(CLOSERS)}]*(?![0-9A-Za-z])|[。！？]")
_GOES_ON = re.compile(r"\s+\S")  # whitespace, then more text


def is_abbreviation(word: str) -> bool:
    """True for a word ending in a full stop that marks an abbreviation: a title, an initial, a dotted acronym."""
    word = word.strip().rstrip(CLOSERS)
    if not word.endswith("."):
        return False
    body = word.lstrip(_OPENERS)
    stem = body[:-1]
    return (len(stem) == 1 and stem.isalpha()) or stem.casefold() in ABBREVIATIONS or bool(_ACRONYM.fullmatch(body))


def is_sentence_final(text: str, marks: str = MARKS, next_word: str | None = None) -> bool:
    """True when the recognised word `text` ends a sentence: its last mark (closing quotes/brackets aside) is in
    `marks`, it is not an abbreviation, and `next_word` (when known) does not start in lower case."""
    stripped = text.rstrip().rstrip(CLOSERS)
    if not stripped or stripped[-1] not in marks:
        return False
    if stripped[-1] == "." and is_abbreviation(text):
        return False
    return not (next_word and next_word.lstrip(_OPENERS)[:1].islower())


def sentence_ends(texts: Sequence[str], marks: str = MARKS) -> list[int]:
    """Indices of the words in `texts` that end a sentence (each judged with the word after it, when any)."""
    return [i for i, t in enumerate(texts)
            if is_sentence_final(t, marks, texts[i + 1] if i + 1 < len(texts) else None)]


def split_sentences(words: list, marks: str = MARKS) -> list[list]:
    """Split `words` (objects with `.text`) after every sentence-final word; an unfinished tail is the last item."""
    out, start = [], 0
    for i in sentence_ends([w.text for w in words], marks):
        out.append(words[start: i + 1])
        start = i + 1
    if start < len(words):
        out.append(words[start:])
    return out


def sentence_end(text: str) -> int | None:
    """Offset of the first sentence-final mark in the draft `text` (None when it has none). A full stop is skipped
    only when the text shows the sentence goes on: a lower-case word, an abbreviation ("z. B."), or a title and a
    word ("Dr. Weber") follows it."""
    for m in _DRAFT_END.finditer(text):
        if m.group() == "." and _GOES_ON.match(text, m.end()):
            after = text[m.end():].split()[0]
            if after[0].islower() or is_abbreviation(after) or _stem(text[: m.end()].split()[-1]) in ABBREVIATIONS:
                continue
        return m.start()
    return None


def unopened_closer(text: str, before: str = "") -> int | None:
    """Offset of the first closing bracket in `text` that nothing opened, in `before` (the text it continues) or in
    `text` itself (None when every closing bracket is matched): a draft that closes what it never opened ("in tre
    lingue)") reads as finished when it is not."""
    depth = dict.fromkeys(BRACKETS.values(), 0)
    for at, c in enumerate(before + text):
        if c in depth:
            depth[c] += 1
        elif c in BRACKETS and depth[BRACKETS[c]]:
            depth[BRACKETS[c]] -= 1
        elif c in BRACKETS and at >= len(before):
            return at - len(before)
    return None


def _stem(word: str) -> str:
    """A word without opening quotes/brackets and its final full stop, case-folded."""
    return word.lstrip(_OPENERS).removesuffix(".").casefold()
