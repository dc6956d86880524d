"""Results of long runs saved earlier, so a notebook can show a sweep without recomputing it.

`make figures` (`python -m alignheads.figures`) writes `figures/manifest.json` with the quality-latency curves of
every direction (about 20 minutes on 2 CPU cores). `saved_quality_latency` returns such curves only when they
come from the same computation the notebook would run: same model, held-out corpus (content hash), head set,
stream pace, sentence count and policy grid.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from .data import Corpus
from .headset import HeadSet


def saved_quality_latency(manifest: str | Path, direction: str, *, model_id: str, corpus: Corpus, headset: HeadSet,
                          pace: float, limit: int | None,
                          grid: Mapping[str, Sequence]) -> tuple[pd.DataFrame | None, str]:
    """(curves, note): the saved curves of `direction` and where they come from, or (None, why not)."""
    path = Path(manifest)
    if not path.is_file():
        return None, f"no saved results at {path} (make figures writes them): computing"
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
        cfg, curves = m["config"], m["quality_latency"].get(direction)
        checks = {
            "model": (m["model"]["model_id"], model_id),
            "held-out corpus": (m["data"][direction]["held_out"]["hash"], corpus.content_hash()),
            "head set": (m["headsets"][direction]["heads"], [str(h) for h in headset.top()]),
            "pace": (cfg["ql_pace"], pace),
            "sentences": (cfg["ql_limit"], limit),
            "policy grid": (cfg["ql_grid"], {k: list(v) for k, v in grid.items()}),
        }
    except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
        return None, f"{path} is not a figures manifest with {direction} quality-latency curves ({e!r}): computing"
    differ = [name for name, (saved, wanted) in checks.items() if saved != wanted]
    if curves is None or differ:
        what = ", ".join(differ) or f"no {direction} curves"
        return None, f"{path} was computed differently ({what}): computing"
    return pd.DataFrame(curves), f"quality-latency curves loaded from {path} ({m.get('command') or 'make figures'})"
