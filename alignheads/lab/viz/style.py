"""Shared figure style: fonts (CJK fallback), rcParams per figure, atomic saving, input checks."""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patheffects import withStroke

from ...base.errors import AlignheadsError, DataFormatError
from ...base.fileio import atomic_open

LOWER_IS_BETTER = frozenset({"aer"})


SCORE_LABELS = {
    "ts": "Translation score (TS)",
    "source_acc": "Source-only accuracy",
    "gold_mass": "Gold attention mass",
    "aer": "AER (lower is better)",
    "precision": "Alignment precision",
    "recall": "Alignment recall",
    "readiness_auc": "Readiness AUC (prefix condition)",
}


METRIC_LABELS = {
    "laal_cu": "LAAL, computation-unaware (s)",
    "laal_ca": "LAAL, computation-aware (s)",
    "al_cu": "AL, computation-unaware (s)",
    "al_ca": "AL, computation-aware (s)",
    "yaal_cu": "YAAL, computation-unaware (s)",
    "yaal_ca": "YAAL, computation-aware (s)",
    "longyaal_cu": "LongYAAL, computation-unaware (s)",
    "longyaal_ca": "LongYAAL, computation-aware (s)",
    "bleu": "BLEU",
    "chrf": "chrF",
    "comet": "COMET",
    "xcomet": "XCOMET",
}


_OTHER_MARKERS = ("D", "P", "v", "h", "<", ">")


# Font families that hold Chinese glyphs, tried in this order among the fonts matplotlib knows.
_SYSTEM_CJK_FAMILIES = (
    "Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "WenQuanYi Zen Hei",
    "Droid Sans Fallback", "AR PL UMing CN", "AR PL UKai CN", "Microsoft YaHei", "SimHei", "PingFang SC",
    "Heiti SC", "Noto Sans CJK JP", "Noto Sans CJK TC",
)


_CJK_RE = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


_TOPK_EDGE = "#e8112d"


_SAVE_DPI = 150


F = TypeVar("F", bound=Callable[..., Figure])


def _packaged_cjk_fonts() -> list[Path]:
    """Noto Sans SC from the pinned `zhplot` package, located without importing it (its import sets rcParams)."""
    spec = importlib.util.find_spec("zhplot")
    locations = (spec.submodule_search_locations or []) if spec else []
    return [f for loc in locations for f in sorted((Path(loc) / "fonts").glob("NotoSansSC-*.ttf"))]


@functools.cache
def cjk_font_family() -> str | None:
    """Name of a font family with Chinese glyphs, registered with matplotlib on first call; None if none exists."""
    for path in _packaged_cjk_fonts():
        font_manager.fontManager.addfont(str(path))
        return font_manager.get_font(str(path)).family_name
    known = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in _SYSTEM_CJK_FAMILIES if name in known), None)


def _rc() -> dict[str, Any]:
    """Per-figure rcParams: the user's fonts plus the CJK fallback, and a compact publication style."""
    family = list(mpl.rcParams["font.family"])
    cjk = cjk_font_family()
    if cjk and cjk not in family:
        family.append(cjk)  # text objects store this list, so the fallback survives later redraws
    return {
        "font.family": family,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "xtick.labelsize": 8.5,
        "ytick.labelsize": 8.5,
        "legend.fontsize": 8.5,
        "legend.frameon": False,
        "figure.titlesize": 12,
        "image.interpolation": "nearest",
    }


def _styled(fn: F) -> F:
    """Build the figure under the per-figure rcParams (global rcParams are left untouched)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Figure:
        with mpl.rc_context(_rc()):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _warn_if_no_cjk(texts: Iterable[str]) -> None:
    if cjk_font_family() is None and any(_CJK_RE.search(str(t)) for t in texts):
        warnings.warn(
            "alignheads.lab.viz: no font with Chinese glyphs found; install the pinned `zhplot==1.0.0` package "
            "(Noto Sans SC) or a system CJK font (Debian: fonts-noto-cjk or fonts-wqy-microhei)",
            stacklevel=4,
        )


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = _SAVE_DPI) -> Path:
    """Write `fig` atomically to `path`; the format comes from the suffix (.png, .pdf, .svg, ...)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise AlignheadsError(
            f"{path}: cannot save a figure as {path.suffix or '(no suffix)'!r}; use one of "
            + ", ".join("." + s for s in sorted(supported))
        )
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight", pad_inches=0.06)
    return path


def _finish(fig: Figure, save: str | os.PathLike | None) -> Figure:
    if save is not None:
        save_figure(fig, save)
    return fig


def _require_columns(df: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise DataFormatError(None, None, f"{what}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataFormatError(
            None, None, f"{what}: missing column(s) {', '.join(map(repr, missing))}; have {list(map(str, df.columns))}"
        )


def _int_column(df: pd.DataFrame, column: str, what: str, minimum: int = 0) -> np.ndarray:
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < minimum)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        got, row = df[column].iloc[i], df.index[i]
        raise DataFormatError(None, None, f"{what}: row {row!r}: {column}={got!r}, expected an integer >= {minimum}")
    return values.astype(int)


def _float_column(df: pd.DataFrame, column: str, what: str, *, allow_nan: bool) -> np.ndarray:
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    bad = np.isinf(values) | (np.isnan(values) & (not allow_nan)) | (df[column].notna().to_numpy() & np.isnan(values))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        got = df[column].iloc[i]
        raise DataFormatError(None, None, f"{what}: row {df.index[i]!r}: {column}={got!r} is not a number")
    return values


def _ticks(n: int, max_labels: int) -> np.ndarray:
    return np.arange(0, n, max(1, math.ceil(n / max_labels)))


def _outlined(color: str = "white", width: float = 2.5) -> list:
    return [withStroke(linewidth=width, foreground=color)]


def _latin() -> list[str]:
    """The font families without the CJK fallback, for bold Latin text (the CJK font has no bold face)."""
    cjk = cjk_font_family()
    return [f for f in mpl.rcParams["font.family"] if f != cjk] or ["sans-serif"]
