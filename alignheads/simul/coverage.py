"""Did a simultaneous translation lose anything? Per-sentence coverage of the source by the output.

For every sentence: its source words (tokens with a letter or digit: a tokenized corpus's "." or "," is not a
word); the source tokens that were accessible when the target sentence ended, i.e. when the last text was added
to it (a translation that ended before its last source word was accessible is flagged `ended_early`); the
target units; the target/source length ratio (below `MIN_RATIO`, 0.5, it is flagged `short`); and, given the
same model's offline translation of the whole sentence, the chrF of the output against it and its length in
units. `simulate` and the speech cascade both build these from the translator's per-sentence updates and write
them with `coverage_summary` (coverage.json).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from sacrebleu.metrics import CHRF

from ..base.languages import target_units

MIN_RATIO = 0.5
ENDED_EARLY = "ended_early"
SHORT = "short"
EMPTY = "empty"


class _Step(Protocol):
    """What coverage reads from one translator update (`alignheads.simul.translator.Update` has it)."""

    new_text: str
    n_accessible: int


@dataclass
class SentenceCoverage:
    """Coverage of one source sentence by its simultaneous translation."""

    index: int
    source_words: int  # source tokens with a letter or digit
    last_word: int  # source tokens up to the last word: all must be accessible before the translation may end
    accessible_at_end: int | None  # accessible source tokens when text was last added (None: no output)
    target_units: int
    length_ratio: float  # target units / source words
    ended_early: bool
    chrf_offline: float | None = None  # chrF of the output against the offline translation of the whole sentence
    offline_units: int | None = None
    flags: list[str] = field(default_factory=list)  # ended_early | short | empty
    source: str = ""
    target: str = ""
    offline: str | None = None

    @property
    def flagged(self) -> bool:
        return bool(self.flags)


def is_word(token: str) -> bool:
    """True for a source token that carries content (a letter or a digit), not punctuation alone."""
    return any(c.isalnum() for c in token)


def word_span(source_tokens: Sequence[str]) -> tuple[int, int]:
    """(number of words, tokens up to and including the last word) of a sentence's source tokens."""
    words = [i for i, t in enumerate(source_tokens) if is_word(t)]
    return len(words), (words[-1] + 1 if words else len(source_tokens))


def coverage_flags(units: int, ratio: float, accessible_at_end: int | None, last_word: int) -> list[str]:
    """The flags of one sentence: empty, ended_early (text last added before its last word was accessible), short."""
    early = accessible_at_end is not None and accessible_at_end < last_word
    return [name for name, on in ((EMPTY, units == 0), (ENDED_EARLY, early), (SHORT, 0 < units and ratio < MIN_RATIO))
            if on]


def moves_toward(target: str, continuation: str, offline: str) -> bool:
    """True when appending `continuation` to `target` raises its chrF against `offline` (the same model's translation
    of the whole sentence): the continuation translates something the target lacks."""
    chrf = CHRF()
    return chrf.sentence_score(target + continuation, [offline]).score > chrf.sentence_score(target, [offline]).score


def sentence_coverage(
    index: int,
    source_tokens: Sequence[str],
    updates: Iterable[_Step],
    target: str,
    tgt_lang: str,
    *,
    source: str = "",
    offline: str | None = None,
) -> SentenceCoverage:
    """Coverage of one sentence of `source_tokens` from the translator updates that produced `target` (in order,
    final one last)."""
    n_source, last_word = word_span(source_tokens)
    at_end = None
    for u in updates:
        if u.new_text.strip():  # the last update that added text ended the target sentence
            at_end = u.n_accessible
    units = len(target_units(target, tgt_lang))
    ratio = units / n_source if n_source else 0.0
    flags = coverage_flags(units, ratio, at_end, last_word)
    early = ENDED_EARLY in flags
    chrf = off_units = None
    if offline is not None:
        chrf = CHRF().sentence_score(target, [offline]).score
        off_units = len(target_units(offline, tgt_lang))
    return SentenceCoverage(index, n_source, last_word, at_end, units, ratio, early, chrf, off_units, flags, source,
                            target, offline)


def mean_chrf(values: Sequence[float | None]) -> float | None:
    """The mean chrF against the offline translations, over the sentences that have one (None: none has)."""
    chrfs = [v for v in values if v is not None]
    return round(sum(chrfs) / len(chrfs), 2) if chrfs else None


def coverage_summary(sentences: Sequence[SentenceCoverage]) -> dict[str, Any]:
    """The coverage.json payload: counts of each flag, the flagged sentence indices, and every sentence."""
    return {
        "n_sentences": len(sentences),
        "n_flagged": sum(s.flagged for s in sentences),
        "flag_counts": {f: sum(f in s.flags for s in sentences) for f in (ENDED_EARLY, SHORT, EMPTY)},
        "flagged": [s.index for s in sentences if s.flagged],
        "min_ratio": MIN_RATIO,
        "mean_chrf_offline": mean_chrf([s.chrf_offline for s in sentences]),
        "sentences": [asdict(s) for s in sentences],
    }


def recount(entries: Sequence[dict], sources: Sequence[Sequence[str]]) -> list[dict]:
    """Coverage entries (`asdict(SentenceCoverage)`, text fields optional) recounted under the current rules from
    their stored numbers and the sentences' source tokens: for results saved before a rule changed."""
    out = []
    for e, tokens in zip(entries, sources, strict=True):
        n, last = word_span(tokens)
        ratio = e["target_units"] / n if n else 0.0
        flags = coverage_flags(e["target_units"], ratio, e["accessible_at_end"], last)
        out.append({**e, "source_words": n, "last_word": last, "length_ratio": ratio, "flags": flags,
                    "ended_early": ENDED_EARLY in flags})
    return out


def format_flagged(summary: dict[str, Any]) -> str:
    """One line for a terminal: how many sentences were flagged, and why."""
    counts = ", ".join(f"{k} {v}" for k, v in summary["flag_counts"].items() if v)
    return f"coverage: {summary['n_flagged']} of {summary['n_sentences']} sentences flagged" + (
        f" ({counts})" if counts else "")
