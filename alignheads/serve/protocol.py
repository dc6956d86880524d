"""MT server protocol v1 (the AlignAtt sidecar protocol WhisperLiveKit's `--translation-backend alignatt` speaks).

`parse_message` turns one client frame into an `Init` or an `Update`, or raises `ProtocolError` naming the
field and what was expected; the builders below make the server's replies. Pure functions, no I/O.
Normative spec: `mt_server_protocol.md` of AlignAtt4LLM (see the README's "Serving" section).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ..base.errors import AlignheadsError

PROTOCOL_VERSION = 1
ERROR_CODES = ("bad_protocol", "unsupported_direction", "busy", "processing_failed", "timeout")
MAX_SEQ = 2**53  # seq and utterance_id are JSON numbers every client can count to exactly


class ProtocolError(AlignheadsError):
    """A client frame that breaks protocol v1: `code` is the wire error code, `kind` the frame's type when it was
    recognised ("init" | "update"), `seq` the update's seq when known."""

    def __init__(self, message: str, code: str = "bad_protocol", seq: int | None = None, kind: str | None = None):
        super().__init__(message)
        self.code, self.seq, self.kind = code, seq, kind


@dataclass(frozen=True)
class WireWord:
    """One source word as the client sent it; times in ms on the stream clock, None when unknown."""

    text: str
    start_ms: float | None = None
    end_ms: float | None = None


@dataclass(frozen=True)
class Init:
    """The first frame of a session."""

    source_lang: str
    target_lang: str
    preset: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    context_text: str = ""
    history: tuple[tuple[str, str], ...] = ()
    accepted_target_prefix: str = ""


@dataclass(frozen=True)
class Update:
    """The full state of the open utterance: committed words (with times), the unstable tail, the stream clock."""

    seq: int
    utterance_id: int
    words: tuple[WireWord, ...]
    clock_ms: float
    tail: tuple[WireWord, ...] = ()
    is_final: bool = False


def parse_message(raw: str | bytes) -> Init | Update:
    """Parse and validate one client frame; `ProtocolError` (code bad_protocol) for anything else."""
    if isinstance(raw, bytes):
        raise ProtocolError("binary frame: protocol v1 frames are JSON text")
    try:
        msg = json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, over-long integers, absurd nesting
        raise ProtocolError(f"invalid JSON: {e}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"a frame must be a JSON object, got {type(msg).__name__}")
    kind = msg.get("type")
    if kind in ("init", "update"):
        try:
            return _parse_init(msg) if kind == "init" else _parse_update(msg)
        except ProtocolError as e:
            e.kind = kind
            raise
    raise ProtocolError(f"unknown message type {show_value(kind)} (expected 'init' or 'update')")


def _parse_init(msg: dict) -> Init:
    version = msg.get("protocol_version")
    if not _is_int(version) or version != PROTOCOL_VERSION:
        raise ProtocolError(f"init.protocol_version must be {PROTOCOL_VERSION}, got {show_value(version)}")
    langs = [_required_str(msg, "init", k) for k in ("source_lang", "target_lang")]
    overrides = msg.get("overrides")
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise ProtocolError(f"init.overrides must be an object, got {type(overrides).__name__}")
    history = msg.get("history") or []
    if not isinstance(history, list):
        raise ProtocolError(f"init.history must be a list of [source, target] pairs, got {type(history).__name__}")
    pairs = []
    for i, pair in enumerate(history):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(s, str) for s in pair)):
            raise ProtocolError(f"init.history[{i}] must be a [source, target] pair of strings, got {show_value(pair)}")
        pairs.append((pair[0], pair[1]))
    return Init(
        langs[0], langs[1],
        preset=_optional_str(msg, "init", "preset") or None,
        overrides=overrides,
        context_text=_optional_str(msg, "init", "context_text"),
        history=tuple(pairs),
        accepted_target_prefix=_optional_str(msg, "init", "accepted_target_prefix"),
    )


def _parse_update(msg: dict) -> Update:
    seq = msg.get("seq")
    if not _is_int(seq) or not -MAX_SEQ < seq < MAX_SEQ:
        raise ProtocolError(f"update.seq must be an integer below 2**53 in size, got {show_value(seq)}")
    try:
        utterance_id = msg.get("utterance_id")
        if not _is_int(utterance_id) or not 0 <= utterance_id < MAX_SEQ:
            raise ProtocolError(f"update.utterance_id must be an integer from 0 below 2**53, got "
                                f"{show_value(utterance_id)}")
        words = _words(msg.get("words"), "update.words")
        tail = msg.get("tail")
        if tail is None:
            tail_words: tuple[WireWord, ...] = ()
        elif isinstance(tail, dict):
            tail_words = _words(tail.get("words", []), "update.tail.words")
        else:
            raise ProtocolError(f"update.tail must be an object {{\"words\": [...]}}, got {type(tail).__name__}")
        clock = msg.get("clock_ms")
        if not _is_number(clock):
            raise ProtocolError(f"update.clock_ms must be a finite number, got {show_value(clock)}")
        last_end = max((w.end_ms for w in words if w.end_ms is not None), default=None)
        if last_end is not None and clock < last_end:
            raise ProtocolError(f"update.clock_ms ({clock}) must be at least the largest committed end_ms ({last_end})")
        final = msg.get("is_final", False)
        if not isinstance(final, bool):
            raise ProtocolError(f"update.is_final must be true or false, got {show_value(final)}")
    except ProtocolError as e:
        e.seq = seq
        raise
    return Update(seq, utterance_id, words, float(clock), tail_words, final)


def _words(rows: Any, where: str) -> tuple[WireWord, ...]:
    if not isinstance(rows, list):
        raise ProtocolError(f"{where} must be a list of [text, start_ms, end_ms], got {type(rows).__name__}")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, list) or not 1 <= len(row) <= 3:
            raise ProtocolError(f"{where}[{i}] must be [text, start_ms, end_ms], got {show_value(row)}")
        text = row[0]
        if not isinstance(text, str) or not text.strip():
            raise ProtocolError(f"{where}[{i}][0] must be a non-empty string, got {show_value(text)}")
        _unicode(text, f"{where}[{i}][0]")
        times = list(row[1:]) + [None] * (3 - len(row))
        for name, t in zip(("start_ms", "end_ms"), times, strict=True):
            if t is not None and not _is_number(t):
                raise ProtocolError(f"{where}[{i}] {name} must be a finite number or null, got {show_value(t)}")
        out.append(WireWord(text.strip(), *(None if t is None else float(t) for t in times)))
    return tuple(out)


def show_value(x: Any) -> str:
    """A short description of a bad value (never the repr of a deep structure: that can recurse)."""
    if x is None or isinstance(x, (str, int, float, bool)):
        r = repr(x)
        return r if len(r) <= 60 else r[:57] + "..."
    return f"a JSON {'array' if isinstance(x, list) else 'object' if isinstance(x, dict) else type(x).__name__}"


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:  # an integer beyond float range
        return False


def _required_str(msg: dict, kind: str, key: str) -> str:
    value = msg.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ProtocolError(f"{kind}.{key} must be a non-empty string, got {show_value(value)}")
    return value.strip()


def _optional_str(msg: dict, kind: str, key: str) -> str:
    value = msg.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProtocolError(f"{kind}.{key} must be a string, got {type(value).__name__}")
    return _unicode(value, f"{kind}.{key}")


def _unicode(text: str, where: str) -> str:
    """`text`, if it is valid Unicode (JSON's \\ud800 escapes can make lone surrogates, which no tokenizer takes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(f"{where} is not valid Unicode text (a lone surrogate, e.g. \\ud800)") from None
    return text


# --- server replies ---------------------------------------------------------------------------
def init_ok(direction: str, preset: str, model: str, **extra: Any) -> dict[str, Any]:
    """The reply to a valid init."""
    return {"type": "init_ok", "protocol_version": PROTOCOL_VERSION, "direction": direction, "preset": preset,
            "model": model, **extra}


def error(code: str, message: str, *, seq: int | None = None, supported: list[str] | None = None) -> dict[str, Any]:
    """An error frame; `seq` echoes the update it answers, `supported` lists directions (unsupported_direction)."""
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    out: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if seq is not None:
        out["seq"] = seq
    if supported is not None:
        out["supported"] = supported
    return out


def translation(seq: int, utterance_id: int, *, committed_text: str, committed_delta: str, buffer_text: str = "",
                covered_source_units: int | None = None, stop_reason: str | None = None, final: bool = False,
                forced_final: bool = False) -> dict[str, Any]:
    """A translation frame; `committed_text` is append-only across the utterance (previous + delta)."""
    out: dict[str, Any] = {"type": "translation", "seq": seq, "utterance_id": utterance_id, "final": final,
                           "committed_text": committed_text, "committed_delta": committed_delta,
                           "buffer_text": buffer_text, "covered_source_units": covered_source_units,
                           "stop_reason": stop_reason}
    if final:
        out["forced_final"] = forced_final
    return out
