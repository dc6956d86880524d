"""The head-set file: which heads align, how they were found, and checks that they fit a model.

The JSON keeps the authors' runtime format (`token_alignment_heads: [{layer, head, ts, count}]`,
sorted by ts, readers take the first k) and adds what makes a head set trustworthy: the model's
shape, the full score matrices, the prompt layout, the calibration corpus and the stability verdict.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import __version__
from ..base.errors import AlignheadsError
from ..base.fileio import write_json
from ..base.languages import parse_direction
from ..model.loader import ModelFacts
from ..model.prompts import PromptLayout

SCHEMA = "alignheads.headset/1"
QUERIES = ("own", "emit")  # where a head is read: at the target token itself, or at the position that emits it
_LABEL = re.compile(r"L(\d+)H(\d+)(?:@(own|emit))?")


class HeadSetError(AlignheadsError):
    """A head-set file is malformed or does not fit the model / layout it is used with."""


@dataclass(frozen=True, order=True)
class Head:
    """One alignment head: layer, query head, and which query position reads it (`own` | `emit`)."""

    layer: int
    head: int
    query: str = "own"

    def __str__(self) -> str:
        return f"L{self.layer}H{self.head}" + ("" if self.query == "own" else f"@{self.query}")

    @classmethod
    def parse(cls, h: HeadLike) -> Head:
        """A Head from any head-like value: Head, HeadEntry, (layer, head[, query]) or a label like "L11H2@emit"."""
        if isinstance(h, Head):
            return h
        if isinstance(h, HeadEntry):
            return h.key
        if isinstance(h, str):
            m = _LABEL.fullmatch(h.strip())
            if not m:
                raise HeadSetError(f"head label {h!r}: expected L<layer>H<head> or L<layer>H<head>@emit")
            return cls(int(m[1]), int(m[2]), m[3] or "own")
        if isinstance(h, (tuple, list)) and len(h) in (2, 3) and all(isinstance(x, int) for x in h[:2]):
            head = cls(int(h[0]), int(h[1]), *(h[2:3] or ()))
            if head.query not in QUERIES:
                raise HeadSetError(f"head {h!r}: query must be one of {QUERIES}, not {head.query!r}")
            return head
        raise HeadSetError(f"not a head: {h!r} (expected Head, (layer, head[, query]) or 'L<layer>H<head>[@emit]')")


@dataclass(frozen=True)
class HeadEntry:
    """A selected head with its calibration scores."""

    layer: int
    head: int
    ts: float | None = None
    count: int | None = None  # aligned target tokens it was scored on
    query: str = "own"
    source_acc: float | None = None
    aer: float | None = None
    kv_shared: bool = False
    weight: float | None = None  # learned ensemble weight (None: equal weights, the plain mean)

    @property
    def key(self) -> Head:
        return Head(self.layer, self.head, self.query)


@dataclass
class HeadSet:
    """A calibrated set of alignment heads for one model and direction."""

    heads: list[HeadEntry]
    model_id: str
    src_lang: str
    tgt_lang: str
    num_layers: int | None  # None for minimal files that do not say
    num_heads: int | None
    num_kv_heads: list[int] | None = None
    kv_shared_layers: dict[int, int] = field(default_factory=dict)
    revision: str | None = None
    model_fingerprint: str | None = None  # ModelFacts.fingerprint (config + tokenizer); None in older/minimal files
    layout: dict | None = None  # PromptLayout.to_dict()
    chat_template_sha256: str | None = None
    score: dict = field(default_factory=dict)  # name, threshold, selection method, k, query
    scores: dict = field(default_factory=dict)  # {"ts": {"own": [[...]], "emit": ...}, ...} full matrices
    calibration: dict = field(default_factory=dict)  # corpus name, files, content_hash, sizes, silver provenance
    evaluation: dict = field(default_factory=dict)  # ensemble AER/P/R on the calibration data, baselines
    stability: dict = field(default_factory=dict)
    promoted: bool = False
    source: str | None = None  # citation, for published head sets
    tool: dict = field(default_factory=lambda: {"name": "alignheads", "version": __version__})
    created: str | None = None
    top_k: int | None = None  # how many of `heads` are used when no k is given (None: all)
    border: dict | None = None  # a learned border (alignheads.heads.border.BorderModel.to_dict()), when fitted

    def top(self, k: int | None = None) -> list[Head]:
        """The first k heads (the file's order: ts descending); k defaults to the set's `top_k` (None: all)."""
        if k is not None and not (isinstance(k, int) and k >= 1):
            raise HeadSetError(f"top-k must be a whole number of heads >= 1, got {k!r}")
        if not self.heads:
            raise HeadSetError(f"head set for {self.model_id!r} ({self.src_lang}-{self.tgt_lang}) has no heads")
        return [h.key for h in self.heads[: k if k is not None else self.top_k]]

    def top_weights(self, k: int | None = None) -> list[float] | None:
        """Learned weights of `top(k)`, or None when the set has none (equal weights)."""
        entries = self.heads[: k if k is not None else self.top_k]
        if all(h.weight is None for h in entries):
            return None
        return [0.0 if h.weight is None else float(h.weight) for h in entries]

    @property
    def layers(self) -> list[int]:
        return sorted({h.layer for h in self.heads})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        entries = d.pop("heads")
        d["kv_shared_layers"] = {str(k): v for k, v in self.kv_shared_layers.items()}
        return {"schema": SCHEMA, "token_alignment_heads": entries, **d}

    def save(self, path: str | Path) -> Path:
        """Write the file atomically; returns the path."""
        path = Path(path)
        if not self.heads:
            raise HeadSetError(f"{path}: not written, the head set has no heads")
        if self.created is None:
            self.created = datetime.now(UTC).isoformat(timespec="seconds")
        write_json(path, self.to_dict())
        return path

    def validate(self, facts: ModelFacts, layout: PromptLayout | None = None, *, strict_model: bool = True) -> None:
        """Fail loudly when the heads do not fit `facts` or were calibrated on another layout.

        The model is compared by fingerprint (config + tokenizer) when the file records one, else by id;
        `strict_model=False` compares the shape only (e.g. to set published heads beside another model's)."""
        where = f"head set for {self.model_id!r}"
        if self.num_layers is not None and (facts.num_layers, facts.num_heads) != (self.num_layers, self.num_heads):
            raise HeadSetError(
                f"{where} has {self.num_layers} layers x {self.num_heads} heads, but model {facts.model_id!r} "
                f"has {facts.num_layers} x {facts.num_heads}: wrong model"
            )
        for h in self.heads:
            if not (0 <= h.layer < facts.num_layers and 0 <= h.head < facts.num_heads):
                raise HeadSetError(
                    f"{where}: head (layer {h.layer}, head {h.head}) out of range for {facts.num_layers} layers "
                    f"x {facts.num_heads} heads"
                )
        redo = f"calibrate heads for it with `alignheads score --model {facts.model_id} ...`"
        if strict_model and self.model_fingerprint and facts.fingerprint:
            if self.model_fingerprint != facts.fingerprint:
                raise HeadSetError(
                    f"{where} was calibrated on another model than {facts.model_id!r}: model fingerprints (config + "
                    f"tokenizer) {self.model_fingerprint[:12]} != {facts.fingerprint[:12]}, although the shapes "
                    f"match; {redo}"
                )
        elif strict_model and self.model_id != "unknown" and _norm_id(self.model_id) != _norm_id(facts.model_id):
            raise HeadSetError(
                f"{where} was calibrated on {self.model_id!r}, not {facts.model_id!r} (the file records no model "
                f"fingerprint, so only the model id and shape were compared); {redo}"
            )
        if layout is not None and self.layout is not None:
            own = PromptLayout.from_dict(self.layout)
            if own.id != layout.id:
                raise HeadSetError(
                    f"{where} was calibrated with prompt layout {own.id} ({own.family}, {own.src_lang}-{own.tgt_lang})"
                    f", but the translator uses {layout.id} ({layout.family}, {layout.src_lang}-{layout.tgt_lang})"
                )
        if self.chat_template_sha256 and facts.chat_template_sha256 and (
            self.chat_template_sha256 != facts.chat_template_sha256
        ):
            raise HeadSetError(f"{where}: the tokenizer's chat template differs from the one calibrated with")


HeadLike = Head | HeadEntry | tuple | str


def as_heads(heads: HeadSet | Sequence[HeadLike] | None, facts: ModelFacts | None = None,
             layout: PromptLayout | None = None, top_k: int | None = None) -> list[Head]:
    """Heads from a HeadSet (validated against `facts`/`layout`, its first `top_k`) or any head-likes, range-checked."""
    if heads is None:
        return []
    if isinstance(heads, HeadSet):
        if facts is not None:
            heads.validate(facts, layout)
        heads = heads.top(top_k)
    out = [Head.parse(h) for h in heads]
    if facts is not None:
        for h in out:
            if not (0 <= h.layer < facts.num_layers and 0 <= h.head < facts.num_heads):
                raise HeadSetError(f"head {h} out of range for {facts.num_layers} layers x {facts.num_heads} heads "
                                   f"of {facts.model_id}")
    return out


def _norm_id(model_id: str) -> str:
    return model_id.strip().lower()


def headset_filename(model_id: str, src: str, tgt: str) -> str:
    """The conventional file name: translation_heads_<model id with / and . -> _>_<src>-<tgt>.json."""
    return f"translation_heads_{re.sub(r'[/.]', '_', model_id)}_{src}-{tgt}.json"


_DIRECTION_IN_NAME = re.compile(r"_([a-z]{2,3})-([a-z]{2,3})\.json$")


def filename_direction(name: str) -> tuple[str, str] | None:
    """The (src, tgt) a head-set file name ends with (`headset_filename`'s `_<src>-<tgt>.json`), or None."""
    m = _DIRECTION_IN_NAME.search(Path(name).name)
    return (m[1], m[2]) if m else None


_INT, _NUMBER, _WEIGHT, _OPT = "an integer", "a finite number", "a finite number >= 0", " or null"
# What each field of the file must hold (JSON types): entries first, then the head set.
_ENTRY_FIELDS = {"layer": _INT, "head": _INT, "ts": _NUMBER + _OPT, "count": _INT + _OPT, "query": "'own' or 'emit'",
                 "source_acc": _NUMBER + _OPT, "aer": _NUMBER + _OPT, "kv_shared": "true or false",
                 "weight": _WEIGHT + _OPT}
_FIELDS = {"model_id": "a string", "src_lang": "a string", "tgt_lang": "a string", "num_layers": _INT + _OPT,
           "num_heads": _INT + _OPT, "num_kv_heads": "a list of integers" + _OPT,
           "kv_shared_layers": "an object of layer -> integer", "revision": "a string" + _OPT,
           "model_fingerprint": "a string" + _OPT, "layout": "an object" + _OPT,
           "chat_template_sha256": "a string" + _OPT, "score": "an object", "scores": "an object",
           "calibration": "an object", "evaluation": "an object", "stability": "an object", "promoted": "true or false",
           "source": "a string" + _OPT, "tool": "an object", "created": "a string" + _OPT,
           "top_k": _INT + _OPT, "border": "an object" + _OPT}


def _fits(value: Any, kind: str) -> bool:
    if value is None:
        return kind.endswith(_OPT)
    kind = kind.removesuffix(_OPT)
    is_int = isinstance(value, int) and not isinstance(value, bool)
    return {
        _INT: is_int,
        _NUMBER: (is_int or isinstance(value, float)) and math.isfinite(value),
        _WEIGHT: (is_int or isinstance(value, float)) and math.isfinite(value) and value >= 0,
        "'own' or 'emit'": value in ("own", "emit"),
        "true or false": isinstance(value, bool),
        "a string": isinstance(value, str),
        "an object": isinstance(value, dict),
        "a list of integers": isinstance(value, list) and all(_fits(v, _INT) for v in value),
        "an object of layer -> integer": isinstance(value, dict) and all(
            k.isdecimal() and _fits(v, _INT) for k, v in value.items()),
    }[kind]


def _check_fields(d: dict, table: dict[str, str], where: str) -> None:
    for k, kind in table.items():
        if k in d and not _fits(d[k], kind):
            raise HeadSetError(f"{where}{k} must be {kind}, got {d[k]!r}")


MAX_FILE_BYTES = 16 << 20  # the largest head-set file read (ours with every matrix of a 42-layer model: ~100 KB)
MAX_HEADS = 4096  # heads in a file whose model shape is unknown (else layers x heads x query positions)


def load_headset(path: str | Path) -> HeadSet:
    """Read a head-set file (ours, or the authors' minimal format) with clear errors.

    Refused: anything but a regular file (a folder, a FIFO that would block), files over MAX_FILE_BYTES, more
    heads than the model has (or MAX_HEADS), a `top_k` below 1. Repeated heads are dropped with a warning; a
    `top_k` above the number of heads is clamped with one."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise HeadSetError(f"{path}: not a regular file (a folder, FIFO or device): give a head-set JSON file")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise HeadSetError(f"{path}: {path.stat().st_size} bytes, more than a head-set file holds "
                               f"({MAX_FILE_BYTES >> 20} MiB at most)")
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise HeadSetError(f"{path}: no such head-set file") from e
    except OSError as e:
        raise HeadSetError(f"{path}: cannot read the head-set file ({e.strerror or e})") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HeadSetError(f"{path}: not a JSON head-set file ({e})") from e
    if not isinstance(d, dict) or not isinstance(d.get("token_alignment_heads"), list):
        raise HeadSetError(f"{path}: expected an object with a 'token_alignment_heads' list")
    if "schema" not in d and {"model", "direction", "score_name", "regime"} & d.keys():
        return _sane(_from_a4l(d, path), path)  # the AlignAtt4LLM authors' published format (model/direction keys)
    entries = []
    for i, item in enumerate(d["token_alignment_heads"]):
        if not isinstance(item, dict) or not all(k in item for k in ("layer", "head")):
            raise HeadSetError(f"{path}: token_alignment_heads[{i}] needs integer 'layer' and 'head', got {item!r}")
        _check_fields(item, _ENTRY_FIELDS, f"{path}: token_alignment_heads[{i}].")
        entries.append(HeadEntry(**{k: item[k] for k in _ENTRY_FIELDS if k in item}))
    if not entries:
        raise HeadSetError(f"{path}: 'token_alignment_heads' is empty: no head to use")
    if "schema" not in d:
        warnings.warn(f"{path}: minimal head-set file (no model shape or provenance); only ranges are checked",
                      stacklevel=2)
        _check_fields(d, {k: _FIELDS[k] for k in ("model_id", "src_lang", "tgt_lang")}, f"{path}: ")
        return _sane(HeadSet(entries, d.get("model_id", "unknown"), d.get("src_lang", "?"), d.get("tgt_lang", "?"),
                             None, None), path)
    if d["schema"] != SCHEMA:
        raise HeadSetError(f"{path}: schema {d['schema']!r} is not supported (expected {SCHEMA!r})")
    missing = [k for k in ("model_id", "src_lang", "tgt_lang", "num_layers", "num_heads") if k not in d]
    if missing:
        raise HeadSetError(f"{path}: missing field(s) {', '.join(missing)}")
    _check_fields(d, _FIELDS, f"{path}: ")
    kw = {k: d[k] for k in HeadSet.__dataclass_fields__ if k in d and k != "heads"}
    kw["kv_shared_layers"] = {int(k): v for k, v in d.get("kv_shared_layers", {}).items()}
    if kw.get("layout") is not None:
        try:
            PromptLayout.from_dict(kw["layout"])
        except (AlignheadsError, TypeError, ValueError) as e:
            raise HeadSetError(f"{path}: layout is not a prompt layout ({e})") from None
    return _sane(HeadSet(heads=entries, **kw), path)


def _sane(hs: HeadSet, path: Path) -> HeadSet:
    """Bounds of a loaded set: a cap on heads, repeated heads dropped (warned), top_k >= 1 (clamped when too big)."""
    cap = hs.num_layers * hs.num_heads * len(QUERIES) if hs.num_layers and hs.num_heads else MAX_HEADS
    if len(hs.heads) > cap:
        raise HeadSetError(f"{path}: {len(hs.heads)} heads, more than "
                           + (f"the model has ({hs.num_layers} layers x {hs.num_heads} heads x {len(QUERIES)} query "
                              "positions)" if cap != MAX_HEADS else f"a head set may list ({MAX_HEADS})"))
    seen: set = set()
    unique = [e for e in hs.heads if not (e.key in seen or seen.add(e.key))]
    if len(unique) < len(hs.heads):
        warnings.warn(f"{path}: {len(hs.heads) - len(unique)} repeated head(s) dropped (each head counts once)",
                      stacklevel=3)
        hs.heads = unique
    if hs.top_k is not None:
        if hs.top_k < 1:
            raise HeadSetError(f"{path}: top_k must be a whole number of heads >= 1, got {hs.top_k}")
        if hs.top_k > len(hs.heads):
            warnings.warn(f"{path}: top_k {hs.top_k} is more than the {len(hs.heads)} heads listed; all are used",
                          stacklevel=3)
            hs.top_k = len(hs.heads)
    return hs


# --------------------------------------------------------------------------- the AlignAtt4LLM authors' files
# Their runtime reads `token_alignment_heads[:top_k]` (top_k 4), from each entry int(layer), int(head) and
# float(ts), always at the token's own position (DESIGN.md §4b); `alignatt4llm.export_a4l` writes such files.

A4L_RUNTIME_TOP_K = 4  # the AlignAtt4LLM reader's default top_k
A4L_SCORE_NAME = "paper_translation_score_argmax"
A4L_CITATION = ("AlignAtt4LLM: Fuxa & Macháček, IWSLT 2026 (ACL Anthology 2026.iwslt-1.32, arXiv 2606.03967), "
                "github.com/QuentinFuxa/AlignAtt4LLM (MIT)")
A4L_ANY_LANGUAGE = "*"  # languages of a head list meant for any direction (shared kernel, unions)

# Gemma-4-E4B-it: 42 layers x 8 query heads; layers 24-41 reuse the keys/values of layer 22 (sliding) or
# 23 (full attention, every sixth layer), as transformers' Gemma4TextConfig(num_hidden_layers=42,
# num_kv_shared_layers=18) lays them out (tests check this against the config class).
GEMMA4_E4B_ID = "google/gemma-4-E4B-it"
GEMMA4_E4B_SHAPE = {"num_layers": 42, "num_heads": 8,
                    "kv_shared_layers": {layer: 23 if layer % 6 == 5 else 22 for layer in range(24, 42)}}


def _direction(d: dict, path: Path) -> tuple[str, str]:
    """(src, tgt) of a file with a model, else A4L_ANY_LANGUAGE twice (model-less lists serve any direction)."""
    direction = d.get("direction")
    if "model" not in d:
        return A4L_ANY_LANGUAGE, A4L_ANY_LANGUAGE
    try:
        return parse_direction(direction)
    except AlignheadsError as e:
        raise HeadSetError(f"{path}: field 'direction': {e}") from None


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


def _from_a4l(d: dict, path: str | Path) -> HeadSet:
    """A HeadSet from one of their files: model, direction, shape, TS matrix, stability; top_k 4 as their runtime.

    The files without `model` (shared kernel, unions) are Gemma-4-E4B-it head lists for any direction."""
    path = Path(path)
    src, tgt = _direction(d, path)
    model_id = d.get("model", GEMMA4_E4B_ID)
    if not isinstance(model_id, str) or not model_id:
        raise HeadSetError(f"{path}: field 'model' must be a model id, got {model_id!r}")
    gemma4 = model_id.lower() == GEMMA4_E4B_ID.lower()
    shape = {"num_layers": None, "num_heads": None, "kv_shared_layers": {}}
    if gemma4:  # a copy: every loaded set gets its own kv_shared_layers
        shape = {**GEMMA4_E4B_SHAPE, "kv_shared_layers": dict(GEMMA4_E4B_SHAPE["kv_shared_layers"])}
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
        heads=entries, model_id=model_id, src_lang=src, tgt_lang=tgt, top_k=A4L_RUNTIME_TOP_K, source=A4L_CITATION,
        score={"name": d.get("score_name", A4L_SCORE_NAME), "threshold": d.get("paper_threshold", 0.1),
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
