"""Simultaneous-translation plots: quality against latency, policy traces, AlignAtt decisions."""

from __future__ import annotations

import os
from typing import Any

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ...base.errors import DataFormatError
from .style import (
    _OTHER_MARKERS,
    METRIC_LABELS,
    _figure,
    _finish,
    _float_column,
    _int_column,
    _outlined,
    _require_columns,
    _styled,
    _warn_if_no_cjk,
)

STOP_STYLES = {  # marker, colour, legend text
    "future_source": ("^", "#d62728", "stopped: needs future source"),
    "rewind": ("X", "#9467bd", "stopped: attention jumped back"),
    "learned_border": ("v", "#8c564b", "stopped: the learned border says wait"),
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


def _fmt_param(v: Any) -> str:
    """A point's setting as its label; a parameter-free policy (local agreement: None, NaN in a table) gets none."""
    if v is None or (isinstance(v, float | np.floating) and np.isnan(v)):
        return ""
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
            if label := _fmt_param(curves["param"].iloc[j]):
                ax.annotate(label, (x_all[j], y_all[j]), xytext=(4, 4), textcoords="offset points", fontsize=7.5,
                            color=color, gid="param-label")
    ax.set_xlabel(METRIC_LABELS.get(latency, latency))
    ax.set_ylabel(METRIC_LABELS.get(quality, quality))
    ax.grid(color="#e6e6e6", linewidth=0.6)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(title="policy", loc="best")
    ax.margins(x=0.08, y=0.1)
    ax.set_title(title or f"{METRIC_LABELS.get(quality, quality)} vs latency")
    return _finish(fig, save)


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
