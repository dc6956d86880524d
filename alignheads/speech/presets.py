"""Named translator settings (`--preset`) and the cascade's default hold-back: no torch, for the command line."""

from __future__ import annotations

from typing import Any

DEFAULT_HOLDBACK = 0.25  # seconds of ASR tail shown in the prompt but not yet accessible (the cascade's default)

# Named translator settings (dotted TranslatorConfig fields -> values) for the CLI's and the server's --preset.
PRESETS: dict[str, dict[str, Any]] = {
    # AlignAtt4LLM's run-time values: border b = 1 with the ASR tail 0.25 s held back.
    "paper": {"alignatt.border": 1, "alignatt.rewind": 8, "alignatt.median_width": 7, "alignatt.max_draft": 16,
              "holdback": DEFAULT_HOLDBACK},
    # The MT server's: the client (WhisperLiveKit) commits words itself and sends the rest as an inaccessible tail,
    # so committed words need no hold-back; `server_fast` drafts 8 tokens per update (cheaper, more sessions).
    "server": {"alignatt.border": 1, "alignatt.max_draft": 16, "holdback": 0.0},
    "server_fast": {"alignatt.border": 1, "alignatt.max_draft": 8, "holdback": 0.0},
}

__all__ = ["DEFAULT_HOLDBACK", "PRESETS"]
