"""The server's settings and bounds (`ServeConfig`): no torch, so that the command line builds its parser at once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..base.errors import AlignheadsError
from ..speech.presets import PRESETS
from .protocol import Init, ProtocolError, Update


@dataclass
class ServeConfig:
    """Server settings (the `alignheads serve` flags)."""

    host: str = "127.0.0.1"
    port: int = 8765  # 0: any free port
    max_sessions: int = 4
    max_utterance_words: int = 120  # a partial update with more committed words is finalised (forced_final); 0: off
    preset: str = "server"  # a name in alignheads.speech.presets.PRESETS
    top_k: int | None = None  # heads of each head set used (its first k; None: all)
    max_frame_bytes: int = 1 << 20  # larger frames close the connection with 1009
    # Bounds checked before any tokenisation (bad_protocol naming the limit); well above what a client that honours
    # forced_final sends (max_utterance_words committed words plus a short tail).
    max_update_words: int = 400  # committed + tail words of one update, partial or final
    max_prefix_words: int = 400  # words of init.accepted_target_prefix
    init_timeout_s: float = 10.0  # a connection that sends no init in this time is closed (its slot freed)
    idle_timeout_s: float = 600.0  # a session silent this long is closed
    allow_origins: tuple[str, ...] = ()  # browser origins allowed beside localhost ones (a missing Origin: allowed)
    token: str | None = None  # when set, clients must connect with ?token=<it> (WhisperLiveKit can carry it)

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise AlignheadsError(f"unknown preset {self.preset!r}; known: {', '.join(PRESETS)}")
        for name in ("max_sessions", "max_frame_bytes", "max_update_words", "max_prefix_words"):
            if getattr(self, name) < 1:
                raise AlignheadsError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_utterance_words < 0:
            raise AlignheadsError(f"max_utterance_words must be >= 0 (0 = off), got {self.max_utterance_words}")
        for name in ("init_timeout_s", "idle_timeout_s"):
            if not getattr(self, name) > 0:
                raise AlignheadsError(f"{name} must be > 0 seconds, got {getattr(self, name)}")

    def limits(self) -> dict[str, Any]:
        """What /health tells a client about the bounds."""
        return {k: getattr(self, k) for k in ("max_sessions", "max_frame_bytes", "max_utterance_words",
                                              "max_update_words", "max_prefix_words", "init_timeout_s",
                                              "idle_timeout_s")} | {"token_required": self.token is not None}

    def check(self, msg: Init | Update) -> None:
        """Refuse a frame over the bounds before it reaches the tokenizer (ProtocolError naming the limit)."""
        if isinstance(msg, Init):
            n = len(msg.accepted_target_prefix.split())
            if n > self.max_prefix_words:
                raise ProtocolError(f"init.accepted_target_prefix has {n} words, more than this server's "
                                    f"max_prefix_words ({self.max_prefix_words})", kind="init")
            return
        n = len(msg.words) + len(msg.tail)
        if n > self.max_update_words:
            raise ProtocolError(f"update has {n} words (committed + tail), more than this server's max_update_words "
                                f"({self.max_update_words}); finalise utterances sooner (forced_final)", seq=msg.seq)


__all__ = ["ServeConfig"]
