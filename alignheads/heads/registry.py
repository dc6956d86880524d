"""Published head sets shipped with the package, so a model can be used without calibrating first.

Like whisper's `_ALIGNMENT_HEADS`, entries are validated against the model's shape when used. The
AlignAtt4LLM authors' head files are vendored unchanged in `alignheads/published/` (MIT; their
LICENSE and the source commit lie beside them): Gemma-4-E4B-it, MiLMMT-46-4B and Qwen3-1.7B.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from .headset import A4L_CITATION, GEMMA4_E4B_ID, HeadEntry, HeadSet, HeadSetError, load_headset

PUBLISHED_DIR = Path(__file__).resolve().parent / "published"

# The paper's head sets for Gemma-4-E4B-it: its top 8 for en-de; en-it and en-zh share these 7.
_EN_DE = [(11, 3), (6, 5), (17, 3), (20, 0), (5, 0), (11, 2), (10, 0), (10, 4)]
SHARED = [(11, 3), (6, 5), (17, 3), (20, 0), (5, 0), (11, 2), (10, 0)]


@functools.cache
def vendored() -> dict[str, HeadSet]:
    """Every vendored head file, by file name, read through `load_headset` (top_k 4 as their runtime)."""
    return {p.name: load_headset(p) for p in sorted(PUBLISHED_DIR.glob("translation_heads_*.json"))}


def vendored_headset(model_id: str, src: str, tgt: str) -> HeadSet | None:
    """The authors' file for (model, direction), or None."""
    for hs in vendored().values():
        if (hs.model_id.lower(), hs.src_lang, hs.tgt_lang) == (model_id.lower(), src, tgt):
            return hs
    return None


def _paper_set(src: str, tgt: str, heads: list[tuple[int, int]]) -> HeadSet:
    """A paper set with each head's TS from the authors' file for the direction, sorted by it."""
    full = vendored_headset(GEMMA4_E4B_ID, src, tgt)
    ts = full.scores["ts"]["own"]
    entries = sorted((HeadEntry(layer, head, ts=ts[layer][head], count=full.calibration["n_pairs_scored"])
                      for layer, head in heads), key=lambda e: -e.ts)
    return HeadSet(heads=entries, model_id=full.model_id, src_lang=src, tgt_lang=tgt, num_layers=full.num_layers,
                   num_heads=full.num_heads, kv_shared_layers=dict(full.kv_shared_layers), source=A4L_CITATION,
                   score={"name": full.score["name"], "threshold": 0.1, "selection": "published top-k by ts"},
                   calibration=dict(full.calibration))


PUBLISHED: dict[tuple[str, str, str], HeadSet] = {
    (GEMMA4_E4B_ID, "en", "de"): _paper_set("en", "de", _EN_DE),
    (GEMMA4_E4B_ID, "en", "it"): _paper_set("en", "it", SHARED),
    (GEMMA4_E4B_ID, "en", "zh"): _paper_set("en", "zh", SHARED),
}


def published_headset(model_id: str, src: str, tgt: str) -> HeadSet:
    """The paper's set for (model, direction), else the authors' file for it; a clear error listing what exists."""
    for (m, s, t), hs in PUBLISHED.items():
        if (m.lower(), s, t) == (model_id.lower(), src.lower(), tgt.lower()):
            return hs
    found = vendored_headset(model_id, src.lower(), tgt.lower())
    if found is not None:
        return found
    known = sorted({f"{m} {s}-{t}" for m, s, t in PUBLISHED}
                   | {f"{h.model_id} {h.src_lang}-{h.tgt_lang}" for h in vendored().values()})
    raise HeadSetError(f"no published head set for {model_id} {src}-{tgt}; known: {', '.join(known)}. "
                       "Calibrate one with `alignheads score`.")


def published_table() -> pd.DataFrame:
    """One row per head of every vendored file: file, model, direction, pairs, rank, layer, head, ts, kv_shared."""
    rows = []
    for name, hs in vendored().items():
        direction = hs.score.get("direction") if "*" in (hs.src_lang, hs.tgt_lang) else f"{hs.src_lang}-{hs.tgt_lang}"
        for rank, e in enumerate(hs.heads, start=1):
            rows.append({"file": name, "model": hs.model_id, "direction": direction,
                         "pairs": hs.calibration.get("n_pairs_scored"), "rank": rank, "layer": e.layer,
                         "head": e.head, "ts": e.ts, "kv_shared": e.kv_shared})
    table = pd.DataFrame.from_records(rows)
    table["pairs"] = table["pairs"].astype("Int64")  # the model-less lists say none
    return table
