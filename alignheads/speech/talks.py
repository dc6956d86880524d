"""The shipped test talks (`data/talks/`): audio, reference translations and sentence segments for scoring."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..base.errors import AlignheadsError
from ..base.paths import TALKS_DIR
from .asr import Word
from .audio import SAMPLE_RATE, load_audio


def talk_references(talk_wav: str | Path, tgt_lang: str) -> tuple[list[str], list[tuple[float, float]]]:
    """Reference sentences and their (offset, duration) in ms for a shipped test talk (`data/talks/talkNN.wav`)."""
    from ..base.text import surface
    from ..corpus.formats import read_corpus

    wav = Path(talk_wav)
    manifest = wav.parent / "talks.json"
    if not manifest.is_file():
        raise AlignheadsError(f"{manifest} not found: references are known only for the shipped talks")
    meta = json.loads(manifest.read_text(encoding="utf-8"))
    talk = meta["talks"].get(wav.stem)
    if talk is None:
        raise AlignheadsError(f"{wav.name} is not one of the shipped talks ({', '.join(meta['talks'])})")
    gold = wav.parent.parent / "gold" / f"en-{tgt_lang}.test.tsv"
    corpus = {p.id: p for p in read_corpus(gold)}
    refs, segs = [], []
    for s in talk["sentences"]:
        refs.append(surface(corpus[s["id"]].tgt_words, tgt_lang).text)
        segs.append((s["start"] * 1000, (s["end"] - s["start"]) * 1000))
    return refs, segs


def talk_clip(talk_wav: str | Path, tgt_lang: str, seconds: float | None = None):
    """A shipped test talk's audio cut to the sentences that end within its first `seconds` (None: all), with
    their reference translations and (offset, duration) segments in ms: what `score_longform` needs."""
    audio = load_audio(talk_wav)
    refs, segments = talk_references(talk_wav, tgt_lang)
    if seconds is None:
        return audio, refs, segments
    keep = [i for i, (start, dur) in enumerate(segments) if start + dur <= seconds * 1000]
    if not keep:
        raise AlignheadsError(f"{talk_wav}: no sentence ends within the first {seconds:g} s "
                              f"(the first ends at {(segments[0][0] + segments[0][1]) / 1000:.1f} s)")
    # Cut where the first sentence left out begins, so no half sentence is transcribed and translated.
    end = segments[keep[-1] + 1][0] / 1000 if keep[-1] + 1 < len(segments) else seconds
    return audio[: int(min(seconds, end) * SAMPLE_RATE)], [refs[i] for i in keep], [segments[i] for i in keep]


# --- a talk's transcript as timed words (replayed to the MT server by its client tests and load benchmark) ---
# talks.json gives each sentence's start and end in the recording; inside a sentence the words are spread in
# proportion to their length (characters + 1): what a speech rate looks like to a client, not a forced alignment.
@dataclass(frozen=True)
class TimedSentence:
    """A sentence of a talk: its id in the gold test set and its timed words."""

    id: str
    words: tuple[Word, ...]


def talk_sentences(talk: str = "talk04", talks_dir: str | Path | None = None) -> list[TimedSentence]:
    """The sentences of a shipped talk (`talk04`...) with word times on the recording's clock."""
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
            timed.append(Word(w, s["start"] + span * acc / total, s["start"] + span * (acc + k) / total))
            acc += k
        out.append(TimedSentence(s["id"], tuple(timed)))
    return out
