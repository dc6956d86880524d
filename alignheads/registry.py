"""Published head sets shipped with the package, so a model can be used without calibrating first.

Like whisper's `_ALIGNMENT_HEADS`, entries are validated against the model's shape when used.
"""

from __future__ import annotations

from .headset import HeadEntry, HeadSet, HeadSetError

_ALIGNATT4LLM = (
    "AlignAtt4LLM: Fuxa & Macháček, IWSLT 2026 (ACL Anthology 2026.iwslt-1.32, arXiv 2606.03967): "
    "translation heads of Gemma-4-E4B-it, calibrated by the authors with their own prompt layout"
)
_GEMMA4_E4B = {"model_id": "google/gemma-4-E4B-it", "num_layers": 42, "num_heads": 8, "num_kv_heads": None}

# (layer, query head, TS) as reported; TS per head is published for en-de only.
_EN_DE = [(11, 3, 0.833), (6, 5, 0.749), (17, 3, 0.740), (20, 0, 0.653), (5, 0, 0.641), (11, 2, 0.601),
          (10, 0, 0.554), (10, 4, 0.549)]
_SHARED = [(11, 3), (6, 5), (17, 3), (20, 0), (5, 0), (11, 2), (10, 0)]  # en-it and en-zh share these


def _published(src: str, tgt: str, heads: list[tuple]) -> HeadSet:
    entries = [HeadEntry(h[0], h[1], ts=h[2] if len(h) > 2 else None) for h in heads]
    return HeadSet(heads=entries, src_lang=src, tgt_lang=tgt, source=_ALIGNATT4LLM,
                   score={"name": "ts", "threshold": 0.1, "selection": "published top-k by ts"},
                   **_GEMMA4_E4B)


PUBLISHED: dict[tuple[str, str, str], HeadSet] = {
    ("google/gemma-4-E4B-it", "en", "de"): _published("en", "de", _EN_DE),
    ("google/gemma-4-E4B-it", "en", "it"): _published("en", "it", _SHARED),
    ("google/gemma-4-E4B-it", "en", "zh"): _published("en", "zh", _SHARED),
}


def published_headset(model_id: str, src: str, tgt: str) -> HeadSet:
    """The shipped head set for (model, direction); a clear error listing what exists otherwise."""
    key = (model_id, src, tgt)
    for k, v in PUBLISHED.items():
        if tuple(x.lower() for x in k) == tuple(x.lower() for x in key):
            return v
    known = ", ".join(f"{m} {s}-{t}" for m, s, t in PUBLISHED)
    raise HeadSetError(f"no published head set for {model_id} {src}-{tgt}; known: {known}. "
                       "Calibrate one with `alignheads score`.")
