"""Plotting functions (data in, Figure out): head score heatmaps, attention maps, head-set overlap, split stability,
quality-latency, policy traces. `alignheads.figures` is the pipeline that computes data and writes figures/ with these.

Every function takes plain data (DataFrames, arrays, lists), returns a `matplotlib.figure.Figure`
and, with `save=PATH`, also writes it atomically (format from the suffix: .png, .pdf, .svg, ...).
Figures are built on `Figure` + the Agg canvas directly, never through pyplot, so importing this
module changes no backend and no global rcParams; Jupyter still shows a returned figure inline.
Chinese (and other CJK) text is drawn with a CJK font added as a per-figure fallback family,
so Latin text keeps the user's default font.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import re
import textwrap
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.patheffects import withStroke

from .errors import AlignheadsError, DataFormatError
from .fileio import atomic_open

__all__ = [
    "cjk_font_family",
    "score_matrix",
    "top_heads",
    "head_heatmap",
    "attention_map",
    "attention_maps",
    "headset_overlap",
    "stability_scatter",
    "quality_latency",
    "headset_ablation",
    "policy_trace",
    "head_sets_side_by_side",
    "aligner_comparison",
    "depth_profile",
    "save_figure",
]

LOWER_IS_BETTER = frozenset({"aer"})
SCORE_LABELS = {
    "ts": "Translation score (TS)",
    "source_acc": "Source-only accuracy",
    "gold_mass": "Gold attention mass",
    "aer": "AER (lower is better)",
    "precision": "Alignment precision",
    "recall": "Alignment recall",
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
STOP_STYLES = {  # marker, colour, legend text
    "future_source": ("^", "#d62728", "stopped: needs future source"),
    "rewind": ("X", "#9467bd", "stopped: attention jumped back"),
    "end_of_draft": ("s", "#2ca02c", "draft exhausted"),
    "sentence_end": ("o", "#17becf", "draft's sentence end held back"),
    "final": ("*", "#ff7f0e", "sentence end: translated to the end"),
}
# draft-token statuses in `alignatt_decisions`: marker, colour, legend text
TOKEN_STYLES = {
    "emitted": ("o", "#1f77b4", "emitted"),
    "unit_cut": ("o", "#9ecae1", "accepted, cut back to a whole unit"),
    "future_source": ("^", "#d62728", "stopped: beyond the border"),
    "rewind": ("X", "#9467bd", "stopped: jumped back"),
    "after_stop": (".", "#b0b0b0", "after the stop"),
    "held": (".", "#b0b0b0", "after the stop"),
    "sentence_end": ("s", "#17becf", "sentence end held back"),
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


# ----------------------------------------------------------------------------- fonts and plumbing


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
            "alignheads.viz: no font with Chinese glyphs found; install the pinned `zhplot==1.0.0` package "
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


# ----------------------------------------------------------------------------- head scores


def _head_rows(scores: pd.DataFrame) -> pd.DataFrame:
    """The rows that are real heads (a scoring table's baseline rows have kind != 'head')."""
    if "kind" in scores.columns:
        scores = scores[scores["kind"] == "head"]
    return scores


def score_matrix(
    scores: pd.DataFrame,
    column: str = "ts",
    query: str | None = None,
    *,
    n_layers: int | None = None,
    n_heads: int | None = None,
) -> np.ndarray:
    """`[n_layers, n_heads]` array of one score column (NaN where a head has no row).

    `scores` has one row per head (`layer`, `head`, score columns; optional `query`). With several
    query kinds, pick one with `query`. The shape defaults to the largest layer/head index + 1.
    """
    what = "head scores"
    _require_columns(scores, ("layer", "head", column), what)
    scores = _head_rows(scores)
    if "query" in scores.columns:
        kinds = list(pd.unique(scores["query"]))
        if query is None and len(kinds) > 1:
            raise AlignheadsError(f"{what} hold several query kinds {kinds}; pass query= one of them")
        if query is not None:
            if query not in kinds:
                raise AlignheadsError(f"{what}: no rows with query={query!r}; have {kinds}")
            scores = scores[scores["query"] == query]
    elif query is not None:
        raise AlignheadsError(f"{what}: query={query!r} given but the table has no 'query' column")
    if scores.empty:
        raise DataFormatError(None, None, f"{what}: no head rows")
    layers = _int_column(scores, "layer", what)
    heads = _int_column(scores, "head", what)
    values = _float_column(scores, column, what, allow_nan=True)
    L = int(layers.max()) + 1 if n_layers is None else n_layers
    H = int(heads.max()) + 1 if n_heads is None else n_heads
    if layers.max() >= L or heads.max() >= H:
        raise AlignheadsError(f"{what}: layer/head index beyond the given shape {L} x {H}")
    pairs = pd.Series(list(zip(layers, heads, strict=True)))
    if pairs.duplicated().any():
        dup = pairs[pairs.duplicated()].iloc[0]
        raise DataFormatError(None, None, f"{what}: head (layer {dup[0]}, head {dup[1]}) appears more than once")
    m = np.full((L, H), np.nan)
    m[layers, heads] = values
    return m


def top_heads(matrix: np.ndarray, k: int, *, lower_is_better: bool = False) -> list[tuple[int, int]]:
    """The `k` best (layer, head) cells of a score matrix, best first; NaN cells never count; ties by index."""
    m = np.asarray(matrix, dtype=float)
    flat = m.ravel()
    idx = np.flatnonzero(np.isfinite(flat))
    key = flat[idx] if lower_is_better else -flat[idx]
    best = idx[np.argsort(key, kind="stable")][: max(k, 0)]
    return [(int(i // m.shape[1]), int(i % m.shape[1])) for i in best]


def _runs(values: Iterable[int]) -> list[tuple[int, int]]:
    """Contiguous runs [(first, last)] of a set of integers."""
    out: list[tuple[int, int]] = []
    for v in sorted(set(values)):
        if out and v == out[-1][1] + 1:
            out[-1] = (out[-1][0], v)
        else:
            out.append((v, v))
    return out


def _query_order(kinds: Sequence[Any]) -> list[Any]:
    pref = {"own": 0, "emit": 1}
    return sorted(kinds, key=lambda q: (pref.get(q, 2), str(q)))


@_styled
def head_heatmap(
    scores: pd.DataFrame,
    column: str = "ts",
    *,
    top_k: int = 8,
    kv_shared_layers: Iterable[int] = (),
    lower_is_better: bool | None = None,
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Layer x head heatmap of one score column; top-k heads outlined and ranked, KV-shared layers hatched.

    One panel per query kind when `scores` has a `query` column with several values. `aer` (and any
    column with `lower_is_better=True`) uses a reversed colormap and ranks the lowest values first.
    """
    _require_columns(scores, ("layer", "head", column), "head scores")
    rows = _head_rows(scores)
    kinds = _query_order(pd.unique(rows["query"])) if "query" in rows.columns else [None]
    L = int(_int_column(rows, "layer", "head scores").max()) + 1 if len(rows) else 0
    H = int(_int_column(rows, "head", "head scores").max()) + 1 if len(rows) else 0
    shared = sorted({int(x) for x in kv_shared_layers})
    if shared and (shared[0] < 0 or shared[-1] >= max(L, 1)):
        raise AlignheadsError(f"kv_shared_layers {shared} outside the table's layers 0..{L - 1}")
    mats = [score_matrix(rows, column, q, n_layers=L, n_heads=H) for q in kinds]
    if all(np.isnan(m).all() for m in mats):
        raise DataFormatError(None, None, f"head scores: column {column!r} has no numeric value")
    low = column in LOWER_IS_BETTER if lower_is_better is None else lower_is_better
    cmap = mpl.colormaps["viridis_r" if low else "viridis"].with_extremes(bad="#d9d9d9")
    vmin = min(np.nanmin(m) for m in mats if not np.isnan(m).all())
    vmax = max(np.nanmax(m) for m in mats if not np.isnan(m).all())
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    label = SCORE_LABELS.get(column, column)

    cell_w, cell_h = 0.36, 0.2 if L <= 24 else 0.17
    width = min(14.0, len(kinds) * (cell_w * H + 0.7) + 1.6)
    height = min(10.0, max(3.2, cell_h * L + 1.7))
    fig = _figure(width, height)
    axes = fig.subplots(1, len(kinds), sharey=True, squeeze=False)[0]
    image = None
    for ax, q, m in zip(axes, kinds, mats, strict=True):
        image = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto", origin="upper")
        ax.set_xticks(_ticks(H, 16))
        ax.set_yticks(_ticks(L, 22))
        ax.set_xticks(np.arange(-0.5, H, 1), minor=True)
        ax.set_yticks(np.arange(-0.5, L, 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.4)
        ax.tick_params(which="minor", length=0)
        ax.set_xlabel("query head")
        if q is not None and len(kinds) > 1:
            ax.set_title(f"query: {q}")
        for first, last in _runs(shared):
            ax.add_patch(Rectangle(
                (-0.5, first - 0.5), H, last - first + 1, facecolor=(1, 1, 1, 0.45), edgecolor="#555555",
                hatch="///", linewidth=0.0, gid="kv-shared",
            ))
        for rank, (layer, head) in enumerate(top_heads(m, top_k, lower_is_better=low), start=1):
            ax.add_patch(Rectangle(
                (head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor=_TOPK_EDGE, linewidth=1.8, gid="topk",
            ))
            ax.text(
                head, layer, str(rank), ha="center", va="center", fontsize=7, fontweight="bold", color="black",
                fontfamily=_latin(), path_effects=_outlined("white", 2.2), gid="topk-rank",
            )
    axes[0].set_ylabel("layer")
    cbar = fig.colorbar(image, ax=list(axes), shrink=0.9 if L > 12 else 1.0, pad=0.02, aspect=30)
    cbar.set_label(label)
    if low:
        cbar.ax.annotate("better", (0.5, -0.01), xycoords="axes fraction", ha="center", va="top", fontsize=7.5)
    handles = [Patch(facecolor="none", edgecolor=_TOPK_EDGE, linewidth=1.8,
                     label=f"top {top_k} ({'lowest' if low else 'highest'}), ranked")] if top_k > 0 else []
    if shared:
        spans = ", ".join(f"{a}–{b}" if a != b else f"{a}" for a, b in _runs(shared))
        handles.append(Patch(facecolor="white", edgecolor="#555555", hatch="///", label=f"KV-shared layers ({spans})"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), handlelength=1.4)
    heading = title or (f"{label}: top {top_k} heads" if top_k > 0 else label)
    if len(kinds) > 1:
        fig.suptitle(heading)
    else:
        axes[0].set_title(heading if kinds[0] is None else f"{heading} (query: {kinds[0]})")
    return _finish(fig, save)


# ----------------------------------------------------------------------------- attention map


def _check_links(links: Iterable[Sequence[int]], n_src: int, n_tgt: int, what: str) -> set[tuple[int, int]]:
    out = set()
    for link in links:
        if len(link) != 2:
            raise AlignheadsError(f"{what} link {link!r}: expected a (src_index, tgt_index) pair")
        s, t = int(link[0]), int(link[1])
        if not (0 <= s < n_src and 0 <= t < n_tgt):
            raise AlignheadsError(
                f"{what} link ({s}, {t}) outside the map: {n_src} source words x {n_tgt} target words "
                "(links are (src_index, tgt_index), 0-based)"
            )
        out.add((s, t))
    return out


@_styled
def attention_map(
    weights: np.ndarray,
    src_words: Sequence[str],
    tgt_words: Sequence[str],
    *,
    sure: Iterable[Sequence[int]] = (),
    possible: Iterable[Sequence[int]] = (),
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Target words x source words attention with gold links (sure: solid box, possible: dashed) and row argmax (dot).

    `weights` is `[n_tgt_words, n_src_words]`; links are `(src_index, tgt_index)` pairs, 0-based.
    """
    return attention_maps([(weights, title)], src_words, tgt_words, sure=sure, possible=possible, save=save)


@_styled
def attention_maps(
    panels: Sequence[tuple[np.ndarray, str | None]],
    src_words: Sequence[str],
    tgt_words: Sequence[str],
    *,
    sure: Iterable[Sequence[int]] = (),
    possible: Iterable[Sequence[int]] = (),
    save: str | os.PathLike | None = None,
) -> Figure:
    """`attention_map` panels side by side for one sentence pair (e.g. one head and a head set's mean), one
    `(weights, title)` each, sharing the target-word axis; each panel has its own colour scale.

    Panel i is `fig.axes[i]` (the colour bars come after the panels): a caller may update its image, its
    argmax dots (gid "argmax") and its title in place and redraw, as the head explorer does.
    """
    src, tgt = [str(x) for x in src_words], [str(x) for x in tgt_words]
    ws = [_check_weights(w, len(src), len(tgt)) for w, _ in panels]
    sure_set = _check_links(sure, len(src), len(tgt), "sure")
    poss_set = _check_links(possible, len(src), len(tgt), "possible") - sure_set
    _warn_if_no_cjk(src + tgt)

    width = min(16.0 * len(ws), max(4.5, 0.42 * len(src) + 2.6) * len(ws))
    height = min(14.0, max(3.5, 0.36 * len(tgt) + 2.2))
    fig = _figure(width, height)
    axes = fig.subplots(1, len(ws), sharey=True, squeeze=False)[0]
    gold = "#f28e00"
    for ax, w, (_, title) in zip(axes, ws, panels, strict=True):
        image = ax.imshow(np.ma.masked_invalid(w), cmap="Blues", aspect="equal", vmin=0.0, vmax=colour_max(w))
        ax.set_xticks(np.arange(len(src)), src, rotation=55, ha="right", rotation_mode="anchor")
        ax.set_yticks(np.arange(len(tgt)), tgt)
        # Cell borders as one collection, not minor-tick grid lines (a tick costs two lines and two texts:
        # this halves the time to build the figure, which the head explorer pays at every pair).
        edges = [[(x, -0.5), (x, len(tgt) - 0.5)] for x in np.arange(-0.5, len(src))]
        edges += [[(-0.5, y), (len(src) - 0.5, y)] for y in np.arange(-0.5, len(tgt))]
        ax.add_collection(LineCollection(edges, colors="#e6e6e6", linewidths=0.5, gid="grid"), autolim=False)
        ax.set_xlabel("source words")
        for s, t in sorted(sure_set):
            ax.add_patch(Rectangle((s - 0.45, t - 0.45), 0.9, 0.9, fill=False, edgecolor=gold, linewidth=2.0,
                                   gid="sure"))
        for s, t in sorted(poss_set):
            ax.add_patch(Rectangle((s - 0.45, t - 0.45), 0.9, 0.9, fill=False, edgecolor=gold, linewidth=1.6,
                                   linestyle=(0, (2.5, 1.5)), gid="possible"))
        cols, rows = row_argmax(w)
        ax.plot(cols, rows, linestyle="none", marker="o", markersize=5, markerfacecolor="#d62728",
                markeredgecolor="white", markeredgewidth=0.8, gid="argmax")
        cbar = fig.colorbar(image, ax=ax, shrink=min(1.0, 0.5 + 0.05 * len(tgt)), pad=0.02)
        cbar.set_label("attention weight")
        if title:
            ax.set_title(title)
    axes[0].set_ylabel("target words")
    handles = [
        Patch(facecolor="none", edgecolor=gold, linewidth=2.0, label="gold sure"),
        Patch(facecolor="none", edgecolor=gold, linewidth=1.6, linestyle=(0, (2.5, 1.5)), label="gold possible"),
        Line2D([], [], linestyle="none", marker="o", markerfacecolor="#d62728", markeredgecolor="white",
               label="row argmax"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3)
    return _finish(fig, save)


def _check_weights(weights: np.ndarray, n_src: int, n_tgt: int) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2 or w.shape != (n_tgt, n_src):
        raise AlignheadsError(
            f"attention weights have shape {w.shape}; expected [n_tgt_words, n_src_words] = [{n_tgt}, {n_src}]"
        )
    if np.isinf(w).any():
        raise AlignheadsError("attention weights contain infinite values")
    return w


def colour_max(w: np.ndarray) -> float:
    """Top of an attention map's colour scale: its largest finite value (1 when it has none)."""
    return max(float(np.nanmax(w)) if np.isfinite(w).any() else 1.0, 1e-9)


def row_argmax(weights: np.ndarray) -> tuple[list[int], list[int]]:
    """(source column, target row) of each row's maximum, skipping rows without a finite value."""
    w = np.asarray(weights, dtype=float)
    rows = [t for t in range(w.shape[0]) if np.isfinite(w[t]).any()]
    return [int(np.nanargmax(w[t])) for t in rows], rows


# ----------------------------------------------------------------------------- head-set overlap


@_styled
def headset_overlap(
    headsets: Mapping[str, Sequence[tuple[int, int]]],
    *,
    n_layers: int,
    n_heads: int,
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Which directions chose which heads: layer x head grid (colour = count, dots = directions) + intersection bars."""
    names = list(headsets)
    if not names:
        raise AlignheadsError("headset_overlap: no head sets given")
    if len(names) > 8:
        raise AlignheadsError(f"headset_overlap: {len(names)} head sets; at most 8 are readable in one figure")
    sets: dict[str, set[tuple[int, int]]] = {}
    for name in names:
        heads = [(int(lh[0]), int(lh[1])) for lh in headsets[name]]
        for layer, head in heads:
            if not (0 <= layer < n_layers and 0 <= head < n_heads):
                raise AlignheadsError(
                    f"head set {name!r}: head (layer {layer}, head {head}) outside {n_layers} layers x {n_heads} heads"
                )
        if len(set(heads)) != len(heads):
            raise AlignheadsError(f"head set {name!r} lists the same head more than once: {heads}")
        sets[name] = set(heads)
    n = len(names)
    colors = [mpl.colormaps["tab10"](i) for i in range(n)]
    count = np.zeros((n_layers, n_heads), dtype=int)
    for s in sets.values():
        for layer, head in s:
            count[layer, head] += 1
    # Intersections: each head belongs to exactly one combination of directions.
    combos: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for cell in sorted(set().union(*sets.values())):
        combos.setdefault(tuple(nm for nm in names if cell in sets[nm]), []).append(cell)
    order = sorted(combos, key=lambda c: (-len(combos[c]), -len(c), [names.index(x) for x in c]))

    cell_h = 0.2 if n_layers <= 24 else 0.17
    grid_w = 0.4 * n_heads + 1.3
    upset_w = max(3.2, 0.5 * len(order) + 1.6)
    bars_h, dots_h = 2.2, 0.3 * n + 0.25
    listing = ["heads as (layer, head):"] + [
        (" ∩ ".join(c) if len(c) > 1 else f"{c[0]} only") + ": " + " ".join(f"({la},{hd})" for la, hd in combos[c])
        for c in order
    ]
    wrapped = [textwrap.fill(line, width=max(28, int(upset_w * 11)), subsequent_indent="   ") for line in listing]
    list_h = 0.17 * sum(w.count("\n") + 1 for w in wrapped) + 0.5
    height = min(12.0, max(cell_h * n_layers + 1.6, bars_h + dots_h + list_h + 1.0))
    fig = _figure(min(16.0, grid_w + upset_w + 0.6), height)
    left, right = fig.subfigures(1, 2, width_ratios=[grid_w, upset_w], wspace=0.03)

    ax = left.subplots()
    blues = mpl.colormaps["Blues"]
    cmap = ListedColormap(["#ffffff"] + [blues(0.22 + 0.55 * i / max(n - 1, 1)) for i in range(n)])
    norm = BoundaryNorm(np.arange(-0.5, n + 1), cmap.N)
    image = ax.imshow(count, cmap=cmap, norm=norm, aspect="auto", origin="upper")
    ax.set_xticks(_ticks(n_heads, 16))
    ax.set_yticks(_ticks(n_layers, 22))
    ax.set_xticks(np.arange(-0.5, n_heads, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, n_layers, 1), minor=True)
    ax.grid(which="minor", color="#e3e3e3", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("query head")
    ax.set_ylabel("layer")
    ax.set_title("selected heads")
    offsets = np.linspace(-0.28, 0.28, n) if n > 1 else np.zeros(1)
    for i, name in enumerate(names):
        pts = sorted(sets[name])
        ax.plot([h + offsets[i] for _, h in pts], [layer for layer, _ in pts], linestyle="none", marker="o",
                markersize=3.6, color=colors[i], markeredgecolor="black", markeredgewidth=0.4, zorder=4,
                gid=f"set:{name}")
    shared_all = combos.get(tuple(names), []) if n > 1 else []
    for layer, head in shared_all:
        ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.3,
                               zorder=3, gid="shared-kernel"))
    cbar = left.colorbar(image, ax=ax, ticks=np.arange(0, n + 1), pad=0.02, aspect=20, shrink=0.45)
    cbar.set_label("directions choosing it")
    cbar.ax.tick_params(length=0)
    handles = [Line2D([], [], linestyle="none", marker="o", color=colors[i], markeredgecolor="black",
                      markeredgewidth=0.4, label=name) for i, name in enumerate(names)]
    if shared_all:
        handles.append(Patch(facecolor="none", edgecolor="black", linewidth=1.3, label=f"chosen by all {n}"))
    left.legend(handles=handles, loc="outside lower center", ncols=min(4, len(handles)), handletextpad=0.3,
                columnspacing=1.0)

    spare = max(height - bars_h - dots_h - list_h - 0.9, 0.01)
    gs = right.add_gridspec(4, 1, height_ratios=[bars_h, dots_h, list_h, spare], hspace=0.0)
    bars_ax = right.add_subplot(gs[0])
    dots_ax = right.add_subplot(gs[1], sharex=bars_ax)
    list_ax = right.add_subplot(gs[2])
    xs = np.arange(len(order))
    sizes = [len(combos[c]) for c in order]
    bars = bars_ax.bar(xs, sizes, color="#4a4a4a", width=0.6, gid="intersections")
    bars_ax.bar_label(bars, padding=2, fontsize=8)
    bars_ax.set_ylabel("heads")
    bars_ax.set_ylim(0, max(sizes, default=1) * 1.2 + 0.3)
    bars_ax.yaxis.get_major_locator().set_params(integer=True)
    bars_ax.spines[["top", "right"]].set_visible(False)
    bars_ax.tick_params(axis="x", length=0, labelbottom=False)
    bars_ax.set_title("intersections")
    for j, combo in enumerate(order):
        member = [names.index(x) for x in combo]
        dots_ax.scatter([j] * n, range(n), s=30, color="#d9d9d9", zorder=2)
        dots_ax.scatter([j] * len(member), member, s=30, color="#222222", zorder=3)
        if len(member) > 1:
            dots_ax.plot([j, j], [min(member), max(member)], color="#222222", linewidth=1.6, zorder=2)
    dots_ax.set_yticks(range(n), [f"{nm} ({len(sets[nm])})" for nm in names])
    for tick, c in zip(dots_ax.get_yticklabels(), colors, strict=True):
        tick.set_color(c)
        tick.set_fontweight("bold")
        tick.set_fontfamily(_latin())
    dots_ax.set_ylim(n - 0.5, -0.5)
    dots_ax.set_xlim(-0.6, len(order) - 0.4)
    dots_ax.tick_params(length=0, labelbottom=False)
    dots_ax.spines[:].set_visible(False)
    list_ax.axis("off")
    list_ax.text(0.0, 0.85, "\n".join(wrapped), transform=list_ax.transAxes, ha="left", va="top", fontsize=7.5,
                 color="#333333", linespacing=1.35, gid="intersection-list")
    fig.suptitle(title or "Head sets across directions")
    return _finish(fig, save)


# ----------------------------------------------------------------------------- split stability


def _label_slots(x: np.ndarray, y: np.ndarray, idx: Sequence[int], lim: tuple[float, float]) -> dict[int, tuple]:
    """Label positions above-left of the y = x diagonal, stacked top to bottom without overlapping."""
    span = lim[1] - lim[0]
    gap, lift = 0.042 * span, 0.035 * span
    order = sorted(idx, key=lambda i: -y[i])
    ys = [min(y[i] + lift, lim[1] - 0.02 * span) for i in order]
    for j in range(1, len(ys)):
        ys[j] = min(ys[j], ys[j - 1] - gap)
    for j in range(len(ys) - 1, -1, -1):  # push back up if the stack ran off the bottom
        floor = lim[0] + 0.02 * span if j == len(ys) - 1 else ys[j + 1] + gap
        ys[j] = max(ys[j], floor)
    return {i: (min(x[i], ly) - 0.03 * span, ly) for i, ly in zip(order, ys, strict=True)}


@_styled
def stability_scatter(
    ts_a: np.ndarray | Sequence[float],
    ts_b: np.ndarray | Sequence[float],
    *,
    labels: Sequence[str] | None = None,
    top_k: int = 8,
    tolerance: float | None = 0.03,
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Half-split TS of every head (x: split A, y: split B) with y = x, each split's top-k and the max |ΔTS|.

    `ts_a`/`ts_b` are same-shaped arrays (a `[layers, heads]` matrix gets "L<l>H<h>" labels);
    `tolerance` draws the ±band of the stability gate (None: no band).
    """
    a, b = np.asarray(ts_a, dtype=float), np.asarray(ts_b, dtype=float)
    if a.shape != b.shape:
        raise AlignheadsError(f"stability_scatter: split scores have different shapes {a.shape} and {b.shape}")
    if labels is None:
        if a.ndim == 2:
            labels = [f"L{layer}H{head}" for layer in range(a.shape[0]) for head in range(a.shape[1])]
        else:
            labels = [str(i) for i in range(a.size)]
    labels = [str(x) for x in labels]
    a, b = a.ravel(), b.ravel()
    if len(labels) != a.size:
        raise AlignheadsError(f"stability_scatter: {len(labels)} labels for {a.size} heads")
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        raise AlignheadsError("stability_scatter: no head has a finite score in both splits")
    top_a = [i for (_, i) in top_heads(np.where(ok, a, np.nan)[None, :], top_k)]
    top_b = [i for (_, i) in top_heads(np.where(ok, b, np.nan)[None, :], top_k)]
    in_a, in_b = set(top_a), set(top_b)
    delta = np.where(ok, np.abs(a - b), -np.inf)
    worst = int(np.argmax(delta))

    fig = _figure(5.4, 5.2)
    ax = fig.subplots()
    lo = float(min(a[ok].min(), b[ok].min()))
    hi = float(max(a[ok].max(), b[ok].max()))
    pad = 0.06 * (hi - lo if hi > lo else 1.0)
    lim = (lo - pad, hi + pad)
    ax.plot(lim, lim, color="#777777", linewidth=1, linestyle="--", zorder=1, label="y = x")
    if tolerance:
        ax.fill_between(lim, [lim[0] - tolerance, lim[1] - tolerance], [lim[0] + tolerance, lim[1] + tolerance],
                        color="#bbbbbb", alpha=0.3, linewidth=0, zorder=0, label=f"|ΔTS| ≤ {tolerance:g}")
    rest = [i for i in np.flatnonzero(ok) if i not in in_a | in_b]
    ax.scatter(a[rest], b[rest], s=12, color="#9a9a9a", alpha=0.7, linewidth=0, zorder=2, label="other heads")
    groups = [
        (sorted(in_a & in_b), "#6a3d9a", "o", f"top {top_k} in both splits", "both"),
        (sorted(in_a - in_b), "#1f77b4", "s", f"top {top_k} in split A only", "a"),
        (sorted(in_b - in_a), "#ff7f0e", "D", f"top {top_k} in split B only", "b"),
    ]
    for idx, color, marker, label, gid in groups:
        if idx:
            ax.scatter(a[idx], b[idx], s=38, color=color, marker=marker, edgecolor="white", linewidth=0.6,
                       zorder=3, label=label, gid=f"top-{gid}")
    span = lim[1] - lim[0]
    for i, (lx, ly) in _label_slots(a, b, sorted(in_a | in_b), lim).items():
        ax.annotate(labels[i], (a[i], b[i]), xytext=(lx, ly), ha="right", va="center", fontsize=7.5,
                    color="#333333", gid="top-label",
                    arrowprops={"arrowstyle": "-", "color": "#999999", "linewidth": 0.6, "shrinkA": 1,
                                "shrinkB": 3} if abs(ly - b[i]) > 0.02 * span else None)
    ax.annotate(
        f"max |ΔTS| = {delta[worst]:.3f}\n({labels[worst]})", (a[worst], b[worst]),
        xytext=(0.97, 0.04), textcoords="axes fraction", ha="right", va="bottom", fontsize=8.5,
        arrowprops={"arrowstyle": "->", "color": "#d62728", "linewidth": 1.0}, color="#d62728", gid="max-delta",
    )
    ax.set_xlim(lim)
    ax.set_ylim(lim)
    ax.set_aspect("equal")
    ax.set_xlabel("TS, split A")
    ax.set_ylabel("TS, split B")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper left", fontsize=8)
    k = len(in_a)
    verdict = f"top {k} identical" if in_a == in_b else f"top {k} differ ({len(in_a & in_b)}/{k} shared)"
    if tolerance:
        verdict += f", max |ΔTS| {'≤' if delta[worst] <= tolerance else '>'} {tolerance:g}"
    ax.set_title(title or f"Half-split stability: {verdict}")
    return _finish(fig, save)


# ----------------------------------------------------------------------------- quality vs latency


def _fmt_param(v: Any) -> str:
    if isinstance(v, float | np.floating):
        return f"{v:g}"
    return str(v)


@_styled
def quality_latency(
    curves: pd.DataFrame,
    *,
    latency: str = "laal_cu",
    quality: str = "bleu",
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Quality against latency, one line per `policy`, each point labelled with its `param`."""
    what = "quality-latency curves"
    _require_columns(curves, ("policy", "param", latency, quality), what)
    if curves.empty:
        raise DataFormatError(None, None, f"{what}: no rows")
    x_all = _float_column(curves, latency, what, allow_nan=False)
    y_all = _float_column(curves, quality, what, allow_nan=False)
    fig = _figure(6.2, 4.4)
    ax = fig.subplots()
    markers = ("o", "s", "D", "^", "v", "P", "X", "h")
    for i, policy in enumerate(pd.unique(curves["policy"])):
        sel = np.flatnonzero((curves["policy"] == policy).to_numpy())
        params = curves["param"].to_numpy()[sel]
        numeric = pd.to_numeric(pd.Series(params), errors="coerce")
        order = sel[np.argsort(numeric.to_numpy() if numeric.notna().all() else x_all[sel], kind="stable")]
        color = mpl.colormaps["tab10"](i % 10)
        ax.plot(x_all[order], y_all[order], marker=markers[i % len(markers)], markersize=5, linewidth=1.6,
                color=color, label=str(policy), gid=f"policy:{policy}")
        for j in order:
            ax.annotate(_fmt_param(curves["param"].iloc[j]), (x_all[j], y_all[j]), xytext=(4, 4),
                        textcoords="offset points", fontsize=7.5, color=color, gid="param-label")
    ax.set_xlabel(METRIC_LABELS.get(latency, latency))
    ax.set_ylabel(METRIC_LABELS.get(quality, quality))
    ax.grid(color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(title="policy", loc="best")
    ax.margins(x=0.08, y=0.1)
    ax.set_title(title or f"{METRIC_LABELS.get(quality, quality)} vs latency")
    return _finish(fig, save)


# ----------------------------------------------------------------------------- head-set ablation


@_styled
def headset_ablation(
    table: pd.DataFrame,
    metric: str = "aer",
    *,
    baselines: pd.DataFrame | None = None,
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Ensemble `metric` of a head set's first k heads against k: one colour per `direction`, one line style
    per `split` (e.g. calibration, held-out); `baselines` (`direction`, `name`, metric) as horizontal lines."""
    what = "head-set ablation"
    _require_columns(table, ("direction", "k", metric), what)
    if table.empty:
        raise DataFormatError(None, None, f"{what}: no rows")
    ks = _int_column(table, "k", what, minimum=1)
    ys = _float_column(table, metric, what, allow_nan=False)
    splits = list(pd.unique(table["split"])) if "split" in table.columns else [None]
    styles = ("-", ":", "--", "-.")
    fig = _figure(6.2, 4.4)
    ax = fig.subplots()
    directions = list(pd.unique(table["direction"]))
    for i, direction in enumerate(directions):
        color = mpl.colormaps["tab10"](i % 10)
        for j, split in enumerate(splits):
            sel = (table["direction"] == direction).to_numpy()
            if split is not None:
                sel = sel & (table["split"] == split).to_numpy()
            idx = np.flatnonzero(sel)
            idx = idx[np.argsort(ks[idx], kind="stable")]
            if not idx.size:
                continue
            label = str(direction) if split is None else f"{direction}, {split}"
            ax.plot(ks[idx], ys[idx], linestyle=styles[j % len(styles)], marker="o", markersize=4, linewidth=1.6,
                    color=color, label=label, gid=f"ablation:{label}")
        if baselines is not None:
            _require_columns(baselines, ("direction", "name", metric), f"{what} baselines")
            base = baselines[baselines["direction"] == direction]
            for r, (name, value) in enumerate(zip(base["name"], base[metric], strict=True)):
                ax.axhline(float(value), color=color, linewidth=0.9, alpha=0.6, linestyle=styles[(r + 2) % 4],
                           gid=f"baseline:{direction}:{name}")
                ax.annotate(f"{name} ({direction})", (1.0, float(value)), xycoords=("axes fraction", "data"),
                            xytext=(-2, 2), textcoords="offset points", ha="right", va="bottom", fontsize=7,
                            color=color, gid="baseline-label")
    ax.set_xscale("log", base=2)
    ticks = sorted(set(ks.tolist()))
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.minorticks_off()
    ax.set_xlabel("heads in the ensemble (first k by calibration TS)")
    ax.set_ylabel(SCORE_LABELS.get(metric, metric))
    ax.grid(color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="best")
    ax.set_title(title or f"Head-set ablation: {SCORE_LABELS.get(metric, metric)} vs k")
    return _finish(fig, save)


# ----------------------------------------------------------------------------- policy trace


@_styled
def policy_trace(
    trace: pd.DataFrame,
    *,
    time_label: str = "time (s)",
    max_text_labels: int = 80,
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Target units emitted over time against source words available (steps), with each stop reason marked.

    `trace` has one row per emitted target unit: `time`, `source_available`, `target_index`, `text`,
    `stop_reason` (empty where the policy did not stop after that unit). Units are labelled with their
    text when there are at most `max_text_labels` of them.
    """
    what = "policy trace"
    _require_columns(trace, ("time", "source_available", "target_index", "text", "stop_reason"), what)
    if trace.empty:
        raise DataFormatError(None, None, f"{what}: no rows")
    t = _float_column(trace, "time", what, allow_nan=False)
    src = _int_column(trace, "source_available", what)
    idx = _int_column(trace, "target_index", what)
    order = np.argsort(idx, kind="stable")
    t, src, idx = t[order], src[order], idx[order]
    texts = ["" if pd.isna(x) else str(x) for x in trace["text"].to_numpy()[order]]
    reasons = trace["stop_reason"].to_numpy()[order]
    if len(set(idx.tolist())) != len(idx):
        raise DataFormatError(None, None, f"{what}: target_index values repeat")
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise DataFormatError(None, None, f"{what}: target_index {idx[i]} emitted at time {t[i]:g}, "
                                          f"before target_index {idx[i - 1]} at {t[i - 1]:g} (output is append-only)")
    _warn_if_no_cjk(texts)

    emitted = idx + 1
    fig = _figure(7.2, 4.6)
    ax = fig.subplots()
    # Source availability is known only at emission times: the grey steps start at the first one.
    ax.step(t, src, where="post", color="#7f7f7f", linewidth=1.6, label="source words available",
            gid="source-available")
    ax.fill_between(t, src, step="post", color="#7f7f7f", alpha=0.12, linewidth=0)
    ax.step(np.r_[t[0], t], np.r_[0, emitted], where="post", color="#1f77b4", linewidth=1.8,
            label="target units emitted", gid="target-emitted")
    ax.plot(t, emitted, linestyle="none", marker="o", markersize=3.5, color="#1f77b4", gid="emissions")
    if len(t) <= max_text_labels:
        for ti, yi, text in zip(t, emitted, texts, strict=True):
            ax.annotate(text, (ti, yi), xytext=(-7, 0), textcoords="offset points", ha="right", va="center",
                        fontsize=7.5, color="#1f3f66", path_effects=_outlined("white", 2.5), zorder=5,
                        gid="unit-text")
    handles, labels_ = ax.get_legend_handles_labels()
    seen_other = 0
    for reason in pd.unique(pd.Series(reasons).dropna()):
        key = str(reason)
        if key == "":
            continue
        if key in STOP_STYLES:
            marker, color, text = STOP_STYLES[key]
        else:
            marker, color, text = _OTHER_MARKERS[seen_other % len(_OTHER_MARKERS)], "#8c564b", f"stopped: {key}"
            seen_other += 1
        sel = np.array([str(r) == key for r in reasons])
        sc = ax.scatter(t[sel], emitted[sel], marker=marker, s=130 if marker == "*" else 70, color=color,
                        edgecolor="white", linewidth=0.7, zorder=4, gid=f"stop:{key}")
        handles.append(sc)
        labels_.append(f"{text} ({int(sel.sum())})")
    ax.set_xlim(left=min(0.0, float(t.min())))
    ax.set_xlabel(time_label)
    ax.set_ylabel("count")
    ax.set_ylim(0, max(int(src.max()), int(emitted.max())) * 1.08 + 0.5)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(color="#ececec", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(handles, labels_, loc="upper left")
    ax.set_title(title or "Policy trace: emissions against available source")
    return _finish(fig, save)


# ----------------------------------------------------------------------------- AlignAtt decisions


@_styled
def alignatt_decisions(
    tokens: pd.DataFrame,
    *,
    border: int | None = None,
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Where the heads pointed: every draft token of every update at (update time, its aligned source word),
    marked by what the policy did with it, over the accessible source words (and the border, when given).

    `tokens` has one row per draft token: `time`, `n_accessible`, `position` (aligned source word, 0-based),
    `status` (emitted, unit_cut, future_source, rewind, after_stop, held, sentence_end) and `order` (the
    token's index in its draft: tokens of one update are spread a little along the time axis).
    """
    what = "AlignAtt decisions"
    _require_columns(tokens, ("time", "n_accessible", "position", "status", "order"), what)
    if tokens.empty:
        raise DataFormatError(None, None, f"{what}: no rows")
    t = _float_column(tokens, "time", what, allow_nan=False)
    acc = _int_column(tokens, "n_accessible", what)
    pos = _int_column(tokens, "position", what)
    order = _int_column(tokens, "order", what)
    status = tokens["status"].astype(str).to_numpy()
    times = np.unique(t)
    step = float(np.min(np.diff(times))) if len(times) > 1 else 1.0
    x = t + order * step * 0.6 / max(1, int(order.max()) + 1)
    fig = _figure(7.2, 4.6)
    ax = fig.subplots()
    first = np.unique(t, return_index=True)[1]
    ax.step(t[first], acc[first] - 1, where="post", color="#7f7f7f", linewidth=1.6, gid="last-accessible",
            label="last accessible source word")
    if border is not None:  # tokens above the dashed line stop the scan
        ax.step(t[first], acc[first] + border - 0.5, where="post", color="#d62728", linewidth=1.0, linestyle="--",
                gid="border", label=f"border: stop at word >= N_accessible {border:+d}")
    seen: set[str] = set()
    for key in pd.unique(pd.Series(status)):
        marker, color, text = TOKEN_STYLES.get(key, ("D", "#8c564b", key))
        sel = status == key
        ax.scatter(x[sel], pos[sel], marker=marker, s=40 if marker not in (".",) else 25, color=color,
                   edgecolor="white", linewidth=0.5, zorder=3, gid=f"status:{key}",
                   label=None if text in seen else f"{text} ({int(sel.sum())})")
        seen.add(text)
    ax.set_xlabel("update time (s from the sentence start); a draft's tokens spread to the right")
    ax.set_ylabel("source word (0-based)")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(color="#ececec", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="upper left", fontsize=7.5)
    ax.set_title(title or "AlignAtt: aligned source word of every draft token")
    return _finish(fig, save)


# ----------------------------------------------------------------------------- models side by side


@_styled
def head_sets_side_by_side(
    panels: Mapping[str, np.ndarray],
    outlined: Mapping[str, Iterable[Sequence[int]]] | None = None,
    kv_shared_layers: Mapping[str, Iterable[int]] | None = None,
    *,
    label: str = "mean TS",
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """One layer x head heatmap per model (`panels`: name -> [layers, heads]), each on its own colour scale,
    with a given head set outlined and KV-shared layers hatched (not the top-k: the set is the caller's)."""
    if not panels:
        raise AlignheadsError("head_sets_side_by_side needs at least one panel")
    outlined, kv_shared_layers = outlined or {}, kv_shared_layers or {}
    mats = {name: np.asarray(m, dtype=float) for name, m in panels.items()}
    for name, m in mats.items():
        if m.ndim != 2 or not np.isfinite(m).any():
            raise AlignheadsError(f"panel {name!r}: expected a [layers, heads] matrix with numbers, got {m.shape}")
    height = min(10.0, max(3.6, 0.17 * max(m.shape[0] for m in mats.values()) + 1.9))
    fig = _figure(min(14.0, sum(0.34 * m.shape[1] + 1.6 for m in mats.values()) + 0.6), height)
    axes = fig.subplots(1, len(mats), squeeze=False)[0]
    handles = {}
    for ax, (name, m) in zip(axes, mats.items(), strict=True):
        L, H = m.shape
        image = ax.imshow(m, cmap=mpl.colormaps["viridis"].with_extremes(bad="#d9d9d9"), aspect="auto")
        ax.set_xticks(_ticks(H, 16))
        ax.set_yticks(_ticks(L, 22))
        ax.set_xlabel("query head")
        ax.set_ylabel("layer")
        ax.set_title(name, fontsize=9)
        for first, last in _runs(int(x) for x in kv_shared_layers.get(name, ())):
            ax.add_patch(Rectangle((-0.5, first - 0.5), H, last - first + 1, facecolor=(1, 1, 1, 0.45),
                                   edgecolor="#555555", hatch="///", linewidth=0.0, gid="kv-shared"))
            handles["kv"] = Patch(facecolor="white", edgecolor="#555555", hatch="///", label="KV-shared layers")
        for layer, head in outlined.get(name, ()):
            if not (0 <= layer < L and 0 <= head < H):
                raise AlignheadsError(f"panel {name!r}: outlined head L{layer}H{head} outside {L} x {H}")
            ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, edgecolor=_TOPK_EDGE,
                                   linewidth=1.8, gid="outlined"))
            handles["set"] = Patch(facecolor="none", edgecolor=_TOPK_EDGE, linewidth=1.8, label="head set")
        fig.colorbar(image, ax=ax, shrink=0.85, pad=0.02, aspect=30).set_label(label)
    if handles:
        fig.legend(handles=list(handles.values()), loc="outside lower center", ncols=len(handles))
    if title:
        fig.suptitle(title)
    return _finish(fig, save)


@_styled
def aligner_comparison(
    table: pd.DataFrame,
    metric: str = "aer",
    *,
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Grouped bars of `metric` per `direction` (groups) and `aligner` (bars, in the table's order)."""
    what = "aligner comparison"
    _require_columns(table, ("direction", "aligner", metric), what)
    if table.empty:
        raise DataFormatError(None, None, f"{what}: no rows")
    directions = list(pd.unique(table["direction"]))
    aligners = list(pd.unique(table["aligner"]))
    width = 0.8 / len(aligners)
    fig = _figure(max(6.0, 1.0 + 0.42 * len(directions) * len(aligners)), 4.2)
    ax = fig.subplots()
    for i, name in enumerate(aligners):
        rows = table[table["aligner"] == name].set_index("direction")
        xs = [d for d in range(len(directions)) if directions[d] in rows.index]
        ys = [float(rows.loc[directions[d], metric]) for d in xs]
        bars = ax.bar(np.array(xs) + (i - (len(aligners) - 1) / 2) * width, ys, width * 0.92,
                      color=mpl.colormaps["tab10"](i % 10), label=name, gid=f"aligner:{name}")
        ax.bar_label(bars, fmt="%.2f", fontsize=6, padding=1)
    ax.set_xticks(range(len(directions)), directions)
    ax.set_ylabel(SCORE_LABELS.get(metric, metric))
    ax.grid(axis="y", color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    fig.legend(loc="outside right upper", fontsize=7.5)
    ax.set_title(title or f"Word aligners on held-apart pairs: {SCORE_LABELS.get(metric, metric)}")
    return _finish(fig, save)


@_styled
def depth_profile(
    matrices: Mapping[str, np.ndarray],
    *,
    top_k: int = 8,
    label: str = "TS",
    title: str | None = None,
    save: str | os.PathLike | None = None,
) -> Figure:
    """Where alignment heads sit: per model, the best head's score per layer against relative depth
    (layer / (layers - 1)), each model's top-k heads marked; models of any depth share the x axis."""
    if not matrices:
        raise AlignheadsError("depth_profile needs at least one model")
    fig = _figure(6.6, 4.2)
    ax = fig.subplots()
    for i, (name, m) in enumerate(matrices.items()):
        m = np.asarray(m, dtype=float)
        if m.ndim != 2 or m.shape[0] < 2:
            raise AlignheadsError(f"{name!r}: expected a [layers >= 2, heads] matrix, got shape {m.shape}")
        depth = np.arange(m.shape[0]) / (m.shape[0] - 1)
        color = mpl.colormaps["tab10"](i % 10)
        ax.plot(depth, np.nanmax(m, axis=1), color=color, linewidth=1.5, label=f"{name}: best head per layer",
                gid=f"profile:{name}")
        top = top_heads(m, top_k)
        ax.scatter([layer / (m.shape[0] - 1) for layer, _ in top], [m[layer, head] for layer, head in top],
                   color=color, edgecolor="black", zorder=3, s=28, label=f"{name}: top {top_k}", gid=f"top:{name}")
    ax.set_xlabel("relative depth (layer / (layers − 1))")
    ax.set_ylabel(label)
    ax.set_xlim(-0.02, 1.02)
    ax.grid(color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(loc="best", fontsize=7.5)
    ax.set_title(title or "Where alignment heads sit in the stack")
    return _finish(fig, save)
