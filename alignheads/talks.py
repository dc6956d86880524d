"""The shipped test talks (`data/talks/`): audio, reference translations and sentence segments for scoring."""

from __future__ import annotations

import json
from pathlib import Path

from .audio import SAMPLE_RATE, load_audio
from .errors import AlignheadsError


def talk_references(talk_wav: str | Path, tgt_lang: str) -> tuple[list[str], list[tuple[float, float]]]:
    """Reference sentences and their (offset, duration) in ms for a shipped test talk (`data/talks/talkNN.wav`)."""
    from .data import read_corpus, surface

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
