"""Write head-set files the AlignAtt4LLM authors' runtime loads (`load_headset` reads theirs).

Their runtime reader takes `token_alignment_heads[:top_k]` (top_k 4 by default) and from each entry
`int(layer)`, `int(head)` and `float(ts)`; it finds the file by name (`headset_filename`) and always
reads a head at the target token's own position; their vLLM observer raises for a head on a
KV-shared layer (DESIGN.md §4b). `export_a4l` writes only what that reader gives the same meaning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from ..base.fileio import refuse_overwriting, write_json
from ..base.languages import get_language
from .headset import A4L_ANY_LANGUAGE, A4L_RUNTIME_TOP_K, HeadSet, HeadSetError, headset_filename


def _refuse(headset: HeadSet, what: str) -> HeadSetError:
    return HeadSetError(f"cannot export the head set of {headset.model_id} {headset.src_lang}-{headset.tgt_lang} "
                        f"for the AlignAtt4LLM runtime: {what}")


def export_a4l(headset: HeadSet, top_k: int = A4L_RUNTIME_TOP_K, *, kv_shared_layers: dict[int, int] | None = None,
               src: str | None = None, tgt: str | None = None) -> dict:
    """The payload their runtime reads with the same meaning: exactly `top_k` own-position heads with numeric ts,
    sorted by ts, none on a KV-shared layer, equal weights, plus their keys. Anything else raises HeadSetError."""
    if headset.border is not None:
        raise _refuse(headset, "it carries a learned border (a classifier over prefix features); their runtime "
                               "applies the fixed border rule only")
    given = [get_language(x).code if x else None for x in (src, tgt)]
    own = [headset.src_lang, headset.tgt_lang]
    for g, o in zip(given, own, strict=True):
        if g and o != A4L_ANY_LANGUAGE and g != o:
            raise _refuse(headset, f"it was calibrated for {own[0]}-{own[1]}, not for the direction asked ({g})")
    src, tgt = given[0] or own[0], given[1] or own[1]
    if A4L_ANY_LANGUAGE in (src, tgt):
        raise _refuse(headset, "the set is for any direction; say which one (--src/--tgt): their runtime finds "
                               "the file by a name that holds the direction")
    if top_k < 1:
        raise _refuse(headset, f"top_k must be >= 1, got {top_k}")
    kv = {**headset.kv_shared_layers, **(kv_shared_layers or {})}
    for e in headset.heads:
        if e.ts is None or not math.isfinite(e.ts):
            raise _refuse(headset, f"head {e.key} has no numeric ts (their reader calls float(ts))")
    ranked = sorted(headset.heads, key=lambda e: -e.ts)
    chosen = ranked[:top_k]
    if len(chosen) < top_k:
        raise _refuse(headset, f"it has {len(chosen)} heads but their reader would use top_k={top_k}; "
                               f"pass --top-k {len(chosen)}")
    for e in chosen:
        if e.query != "own":
            raise _refuse(headset, f"head {e.key} is read at the emitting position; their runtime "
                                   "reads every head at the token's own position")
        if e.kv_shared or e.layer in kv:
            reuses = f" (it reuses layer {kv[e.layer]}'s keys and values)" if e.layer in kv else ""
            raise _refuse(headset, f"head {e.key} is on KV-shared layer {e.layer}{reuses}; their vLLM observer "
                                   "raises for such heads")
    if len({e.weight for e in chosen}) > 1:  # equal weights (or none) are the plain mean their runtime takes
        raise _refuse(headset, "it has learned per-head weights ("
                      + ", ".join(f"{e.key}={e.weight}" for e in chosen) + "); their runtime averages heads equally")
    payload = headset.to_dict()
    payload["token_alignment_heads"] = [
        {"layer": e.layer, "head": e.head, "ts": round(float(e.ts), 6), "count": e.count, "query": "own"}
        for e in chosen
    ]
    payload.update({
        "model": headset.model_id, "direction": f"{src}-{tgt}", "src_lang": src, "tgt_lang": tgt,
        "num_layers": headset.num_layers, "num_heads": headset.num_heads, "top_k": top_k,
        "used_pairs": headset.calibration.get("n_pairs_scored"),
        "used_target_tokens": headset.calibration.get("n_target_tokens"),
        "score_name": headset.score.get("name", "ts"), "paper_threshold": headset.score.get("threshold", 0.1),
        "runtime": "alignatt4llm",
    })
    return payload


def save_a4l(headset: HeadSet, out: str | Path, top_k: int = A4L_RUNTIME_TOP_K, *,
             kv_shared_layers: dict[int, int] | None = None, src: str | None = None, tgt: str | None = None,
             inputs: Sequence[str | Path] = ()) -> Path:
    """Write `export_a4l`'s payload atomically; `out` is a directory (the conventional name is used inside) or a
    file that must carry that name, since their runtime looks the file up by name. Never over one of `inputs`."""
    payload = export_a4l(headset, top_k, kv_shared_layers=kv_shared_layers, src=src, tgt=tgt)
    name = headset_filename(headset.model_id, payload["src_lang"], payload["tgt_lang"])
    as_dir = str(out).endswith(("/", "\\"))  # Path() drops a trailing separator: look before converting
    out = Path(out)
    if as_dir or out.is_dir():
        out = out / name
    elif out.name != name:
        raise HeadSetError(f"{out}: the AlignAtt4LLM runtime finds head files by name; call it {name}")
    refuse_overwriting(out, inputs)
    write_json(out, payload)
    return out
