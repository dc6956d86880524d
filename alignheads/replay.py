"""A shipped talk's transcript as timed words, for replaying it to the MT server (client tests, load benchmark).

`data/talks/talks.json` gives each sentence's start and end in the recording; inside a sentence the words
are spread in proportion to their length (characters + 1), which is what a speech rate looks like to a
client, not a forced alignment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import AlignheadsError

TALKS_DIR = Path(__file__).resolve().parents[1] / "data" / "talks"


@dataclass(frozen=True)
class TimedWord:
    """A transcript word (punctuation attached, as ASR output has it) and its times in seconds."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class TimedSentence:
    id: str
    words: tuple[TimedWord, ...]


def talk_sentences(talk: str = "talk04", talks_dir: str | Path | None = None) -> list[TimedSentence]:
    """The sentences of a shipped talk with word times on the recording's clock."""
    manifest = Path(talks_dir or TALKS_DIR) / "talks.json"
    if not manifest.is_file():
        raise AlignheadsError(f"{manifest} not found: the shipped talks live in a checkout's data/talks")
    talks = json.loads(manifest.read_text(encoding="utf-8"))["talks"]
    if talk not in talks:
        raise AlignheadsError(f"{manifest}: no talk {talk!r} (known: {', '.join(talks)})")
    out = []
    for s in talks[talk]["sentences"]:
        words = s["text"].split()
        weights = [len(w) + 1 for w in words]
        total, acc, timed = sum(weights), 0, []
        span = s["end"] - s["start"]
        for w, k in zip(words, weights, strict=True):
            timed.append(TimedWord(w, s["start"] + span * acc / total, s["start"] + span * (acc + k) / total))
            acc += k
        out.append(TimedSentence(s["id"], tuple(timed)))
    return out
