"""The AlignAtt4LLM authors' head-file format: read their published files, write files their runtime loads.

Their runtime reader takes `token_alignment_heads[:top_k]` (top_k 4 by default) and from each entry
`int(layer)`, `int(head)` and `float(ts)`; it finds the file by name (`headset_filename`) and always
reads a head at the target token's own position; their vLLM observer raises for a head on a
KV-shared layer (DESIGN.md §4b). `export_a4l` writes only what that reader gives the same meaning.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from .fileio import write_json
from .headset import HeadEntry, HeadSet, HeadSetError, headset_filename
from .languages import get_language

RUNTIME_TOP_K = 4  # their reader's default top_k
SCORE_NAME = "paper_translation_score_argmax"
CITATION = ("AlignAtt4LLM: Fuxa & Macháček, IWSLT 2026 (ACL Anthology 2026.iwslt-1.32, arXiv 2606.03967), "
            "github.com/QuentinFuxa/AlignAtt4LLM (MIT)")
ANY_LANGUAGE = "*"  # languages of a head list meant for any direction (shared kernel, unions)

# Gemma-4-E4B-it: 42 layers x 8 query heads; layers 24-41 reuse the keys/values of layer 22 (sliding) or
# 23 (full attention, every sixth layer), as transformers' Gemma4TextConfig(num_hidden_layers=42,
# num_kv_shared_layers=18) lays them out (tests check this against the config class).
GEMMA4_E4B_ID = "google/gemma-4-E4B-it"
GEMMA4_E4B_SHAPE = {"num_layers": 42, "num_heads": 8,
                    "kv_shared_layers": {layer: 23 if layer % 6 == 5 else 22 for layer in range(24, 42)}}


def _direction(d: dict, path: Path) -> tuple[str, str]:
    """(src, tgt) of a file with a model, else ANY_LANGUAGE twice (model-less lists serve any direction)."""
    direction = d.get("direction")
    if "model" not in d:
        return ANY_LANGUAGE, ANY_LANGUAGE
    if not isinstance(direction, str) or not re.fullmatch(r"[A-Za-z]{2,3}-[A-Za-z]{2,3}", direction):
        raise HeadSetError(f"{path}: field 'direction' must look like 'en-de', got {direction!r}")
    src, tgt = direction.split("-")
    return get_language(src).code, get_language(tgt).code


def _entries(d: dict, path: Path) -> list[HeadEntry]:
    out = []
    for i, item in enumerate(d["token_alignment_heads"]):
        ok = isinstance(item, dict) and all(type(item.get(k)) is int for k in ("layer", "head"))
        ts = item.get("ts") if isinstance(item, dict) else None
        if not ok or isinstance(ts, bool) or not isinstance(ts, int | float):
            raise HeadSetError(f"{path}: token_alignment_heads[{i}] needs integer 'layer', 'head' and a numeric "
                               f"'ts' (their reader requires all three), got {item!r}")
        out.append(HeadEntry(item["layer"], item["head"], ts=float(ts), count=item.get("count")))
    return out


def headset_from_a4l(d: dict, path: str | Path) -> HeadSet:
    """A HeadSet from one of their files: model, direction, shape, TS matrix, stability; top_k 4 as their runtime.

    The files without `model` (shared kernel, unions) are Gemma-4-E4B-it head lists for any direction."""
    path = Path(path)
    src, tgt = _direction(d, path)
    model_id = d.get("model", GEMMA4_E4B_ID)
    if not isinstance(model_id, str) or not model_id:
        raise HeadSetError(f"{path}: field 'model' must be a model id, got {model_id!r}")
    gemma4 = model_id.lower() == GEMMA4_E4B_ID.lower()
    shape = dict(GEMMA4_E4B_SHAPE) if gemma4 else {"num_layers": None, "num_heads": None, "kv_shared_layers": {}}
    for key in ("num_layers", "num_heads"):
        if key in d:
            if type(d[key]) is not int or d[key] < 1:
                raise HeadSetError(f"{path}: field {key!r} must be a positive integer, got {d[key]!r}")
            shape[key] = d[key]
    entries = _entries(d, path)
    kv = shape["kv_shared_layers"]
    entries = [HeadEntry(e.layer, e.head, e.ts, e.count, kv_shared=e.layer in kv) for e in entries]
    gate = d.get("promotion_gate") or {}
    return HeadSet(
        heads=entries, model_id=model_id, src_lang=src, tgt_lang=tgt, top_k=RUNTIME_TOP_K, source=CITATION,
        score={"name": d.get("score_name", SCORE_NAME), "threshold": d.get("paper_threshold", 0.1),
               "selection": "top-k by ts at the token's own position", "direction": d.get("direction"),
               **{k: d[k] for k in ("regime", "source_directions", "top_k", "max_heads", "note") if k in d}},
        scores={"ts": {"own": d["ts_matrix"]}} if "ts_matrix" in d else {},
        calibration={"corpus": f"AlignAtt4LLM word_alignments_{d.get('direction')}" if "model" in d else None,
                     "files": [path.name], "n_pairs_scored": d.get("used_pairs"),
                     "n_target_tokens": d.get("used_target_tokens"), "datasets": d.get("datasets"),
                     "alignments": "silver (LLM-made sparse anchors)"},
        stability={k: d[k] for k in ("stability_checks", "stability_summary", "promotion_gate") if k in d},
        promoted=bool(gate.get("eligible_for_promotion", False)),
        **shape,
    )


def _refuse(headset: HeadSet, what: str) -> HeadSetError:
    return HeadSetError(f"cannot export the head set of {headset.model_id} {headset.src_lang}-{headset.tgt_lang} "
                        f"for the AlignAtt4LLM runtime: {what}")


def export_a4l(headset: HeadSet, top_k: int = RUNTIME_TOP_K, *, kv_shared_layers: dict[int, int] | None = None,
               src: str | None = None, tgt: str | None = None) -> dict:
    """The payload their runtime reads with the same meaning: exactly `top_k` own-position heads with numeric ts,
    sorted by ts, none on a KV-shared layer, equal weights, plus their keys. Anything else raises HeadSetError."""
    given = [get_language(x).code if x else None for x in (src, tgt)]
    own = [headset.src_lang, headset.tgt_lang]
    for g, o in zip(given, own, strict=True):
        if g and o != ANY_LANGUAGE and g != o:
            raise _refuse(headset, f"it was calibrated for {own[0]}-{own[1]}, not for the direction asked ({g})")
    src, tgt = given[0] or own[0], given[1] or own[1]
    if ANY_LANGUAGE in (src, tgt):
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


def save_a4l(headset: HeadSet, out: str | Path, top_k: int = RUNTIME_TOP_K, *,
             kv_shared_layers: dict[int, int] | None = None, src: str | None = None, tgt: str | None = None) -> Path:
    """Write `export_a4l`'s payload atomically; `out` is a directory (the conventional name is used inside) or a
    file that must carry that name, since their runtime looks the file up by name."""
    payload = export_a4l(headset, top_k, kv_shared_layers=kv_shared_layers, src=src, tgt=tgt)
    name = headset_filename(headset.model_id, payload["src_lang"], payload["tgt_lang"])
    out = Path(out)
    if out.is_dir() or str(out).endswith(("/", "\\")):
        out = out / name
    elif out.name != name:
        raise HeadSetError(f"{out}: the AlignAtt4LLM runtime finds head files by name; call it {name}")
    write_json(out, payload)
    return out
