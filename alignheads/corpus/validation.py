"""Corpus validation: counts, index and link checks, and a readable report."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from .pairs import Corpus, SentencePair


@dataclass
class ValidationReport:
    """Counts and problems found in a corpus; `n_possible` counts all possible links (sure included)."""

    n_pairs: int
    n_src_words: int
    n_tgt_words: int
    n_sure: int
    n_possible: int
    problems: list[str] = field(default_factory=list)
    n_sparse: int = 0  # pairs whose links are sparse anchors
    n_linked_tgt: int = 0  # target words of those pairs that have a link (the only ones scored)
    n_anchor_links: int | None = None  # span-to-span links as the file lists them (a4l format)
    notes: dict = field(default_factory=dict)  # what a reader normalised (corpus.meta["normalised"])

    @property
    def ok(self) -> bool:
        return not self.problems


def _is_punct(word: str) -> bool:
    return all(unicodedata.category(ch)[0] in "PS" for ch in word)


def validate_corpus(corpus: Corpus, strict: bool = False) -> ValidationReport:
    """Check indices, sure ⊆ possible, ids, unaligned marks; strict: every non-punctuation word is covered."""
    report = ValidationReport(len(corpus), 0, 0, 0, 0, notes=dict(corpus.meta.get("normalised", {})),
                              n_anchor_links=corpus.meta.get("anchor_links"))
    seen: set[str] = set()
    for p in corpus:
        def say(msg: str, p: SentencePair = p) -> None:
            report.problems.append(f"pair {p.id}: {msg}")

        report.n_src_words += len(p.src_words)
        report.n_tgt_words += len(p.tgt_words)
        report.n_sure += len(p.sure)
        report.n_possible += len(p.possible)
        if p.sparse:
            report.n_sparse += 1
            report.n_linked_tgt += len(p.linked_targets)
        if p.id in seen:
            say("duplicate id")
        seen.add(p.id)
        if not p.src_words or not p.tgt_words:
            say("empty pair (no source or no target words)")
        if not p.sure <= p.possible:
            say(f"sure links not in possible: {sorted(p.sure - p.possible)}")
        for i, j in sorted(p.possible):
            if not (0 <= i < len(p.src_words) and 0 <= j < len(p.tgt_words)):
                say(f"link {i}-{j} out of range ({len(p.src_words)} source, {len(p.tgt_words)} target words)")
        for side, words, marked, k in (("source", p.src_words, p.src_unaligned, 0),
                                       ("target", p.tgt_words, p.tgt_unaligned, 1)):
            linked = {link[k] for link in p.possible}
            for idx in sorted(marked):
                if not 0 <= idx < len(words):
                    say(f"{side} unaligned mark {idx} out of range ({len(words)} words)")
                elif idx in linked:
                    say(f"{side} word {idx} {words[idx]!r} is marked unaligned but has a link")
            if strict and not p.sparse:  # sparse anchors leave most words unlinked by design
                for idx, w in enumerate(words):
                    if idx not in linked and idx not in marked and not _is_punct(w):
                        say(f"{side} word {idx} {w!r} has no link and is not marked unaligned")
    return report


def format_report(report: ValidationReport, max_problems: int = 50) -> str:
    """Human-readable summary of a validation report (the first `max_problems` problems listed)."""
    lines = [(f"{report.n_pairs} pairs, {report.n_src_words} source words, {report.n_tgt_words} target words, "
              f"{report.n_sure} sure links, {report.n_possible} possible links (sure included)")]
    if report.n_sparse:
        spans = "" if report.n_anchor_links is None else f" ({report.n_anchor_links} span links)"
        lines.append(f"sparse anchors{spans} in {report.n_sparse} pairs: {report.n_linked_tgt} of their target words "
                     "are linked and scored; unlinked words are unknown, not unaligned")
    for what, count in report.notes.items():
        lines.append(f"note: {count} {what}")
    if report.ok:
        lines.append("no problems found")
    else:
        lines.append(f"{len(report.problems)} problem(s):")
        lines += [f"  {p}" for p in report.problems[:max_problems]]
        if len(report.problems) > max_problems:
            lines.append(f"  ... and {len(report.problems) - max_problems} more")
    return "\n".join(lines)
