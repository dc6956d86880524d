"""Attention maps of one sentence pair, with gold links, and the overlap of a head set's alignments."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence

import matplotlib as mpl
import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from ...base.errors import AlignheadsError
from .style import _figure, _finish, _latin, _styled, _ticks, _warn_if_no_cjk


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
