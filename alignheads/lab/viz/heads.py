"""Head-level plots: score heat maps, split stability, head-set ablations, side-by-side sets, depth."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from ...base.errors import AlignheadsError, DataFormatError
from .style import (
    _TOPK_EDGE,
    LOWER_IS_BETTER,
    SCORE_LABELS,
    _figure,
    _finish,
    _float_column,
    _int_column,
    _latin,
    _outlined,
    _require_columns,
    _styled,
    _ticks,
)


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
