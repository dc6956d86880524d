"""The corpus model: word-aligned sentence pairs (sure and possible links) in one direction."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from ..base.errors import AlignheadsError
from ..base.languages import get_language
from ..base.text import Surface, surface

Link = tuple[int, int]


@dataclass(frozen=True)
class SentencePair:
    """One sentence pair with sure and possible word links; `possible` always contains `sure`."""

    id: str
    src_words: tuple[str, ...]
    tgt_words: tuple[str, ...]
    sure: frozenset[Link]
    possible: frozenset[Link]
    src_unaligned: frozenset[int] = frozenset()  # words explicitly marked as having no link
    tgt_unaligned: frozenset[int] = frozenset()
    # Sparse anchors (AlignAtt4LLM's sets): only linked target words have a known alignment; the others are
    # unknown, not unaligned, so AER ignores predictions for them.
    sparse: bool = False

    def __post_init__(self):
        set_ = object.__setattr__
        set_(self, "src_words", tuple(self.src_words))
        set_(self, "tgt_words", tuple(self.tgt_words))
        set_(self, "sure", frozenset(self.sure))
        set_(self, "possible", frozenset(self.possible) | self.sure)
        set_(self, "src_unaligned", frozenset(self.src_unaligned))
        set_(self, "tgt_unaligned", frozenset(self.tgt_unaligned))

    def swapped(self) -> SentencePair:
        """The same pair seen from the other direction: target becomes source, links (i, j) -> (j, i)."""
        return SentencePair(self.id, self.tgt_words, self.src_words, _flip(self.sure), _flip(self.possible),
                            self.tgt_unaligned, self.src_unaligned, self.sparse)

    @property
    def linked_targets(self) -> frozenset[int]:
        """Target words with at least one (possible) link."""
        return frozenset(j for _, j in self.possible)


def _flip(links: frozenset[Link]) -> frozenset[Link]:
    return frozenset((j, i) for i, j in links)


@dataclass
class Corpus:
    """Word-aligned sentence pairs in one direction, with where they came from."""

    pairs: list[SentencePair]
    src_lang: str
    tgt_lang: str
    name: str = ""
    sources: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.pairs = list(self.pairs)
        self.src_lang = get_language(self.src_lang).code
        self.tgt_lang = get_language(self.tgt_lang).code
        self.sources = tuple(str(s) for s in self.sources)

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[SentencePair]:
        return iter(self.pairs)

    def __getitem__(self, i: int) -> SentencePair:
        return self.pairs[i]

    def swap(self) -> Corpus:
        """The corpus in the other direction (en-zh from zh-en gold); swapping twice gives it back."""
        meta = dict(self.meta)
        if not meta.pop("swapped", False):
            meta["swapped"] = True
        return Corpus([p.swapped() for p in self.pairs], self.tgt_lang, self.src_lang, self.name, self.sources, meta)

    def content_hash(self) -> str:
        """SHA-256 of the languages and pairs (not name, paths or meta): equal content, equal hash."""
        rows = [[p.id, p.src_words, p.tgt_words, sorted(p.sure), sorted(p.possible - p.sure),
                 sorted(p.src_unaligned), sorted(p.tgt_unaligned)] + (["sparse"] if p.sparse else [])
                for p in self.pairs]  # the flag only when set: hashes of exhaustive corpora stay as they were
        blob = json.dumps([self.src_lang, self.tgt_lang, rows], ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def split(self, fraction: float = 0.5, seed: int = 0) -> tuple[Corpus, Corpus]:
        """Two disjoint random parts (seeded), the first with round(fraction * len) pairs, order kept."""
        if not 0.0 < fraction < 1.0:
            raise AlignheadsError(f"split fraction must be between 0 and 1 (exclusive), got {fraction}")
        k = round(fraction * len(self.pairs))
        if k == 0 or k == len(self.pairs):
            raise AlignheadsError(f"cannot split {len(self.pairs)} pairs with fraction {fraction}: "
                                  "a part would be empty")
        order = list(range(len(self.pairs)))
        random.Random(seed).shuffle(order)
        first, second = (replace(self, pairs=[self.pairs[i] for i in sorted(idx)],
                                 meta={**self.meta, "split": {"seed": seed, "fraction": fraction, "part": part}})
                         for part, idx in ((1, order[:k]), (2, order[k:])))
        return first, second

    def head(self, n: int) -> Corpus:
        """The first n pairs (all of them when n >= len)."""
        if n < 0:
            raise AlignheadsError(f"head needs n >= 0, got {n}")
        return replace(self, pairs=self.pairs[:n], meta=dict(self.meta))

    def src_surface(self, i: int) -> Surface:
        """Prompt text and word spans of pair i's source side."""
        return surface(self.pairs[i].src_words, self.src_lang)

    def tgt_surface(self, i: int) -> Surface:
        """Prompt text and word spans of pair i's target side."""
        return surface(self.pairs[i].tgt_words, self.tgt_lang)
