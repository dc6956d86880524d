"""Plotting functions (data in, Figure out): head score heatmaps, attention maps, head-set overlap, split stability,
quality-latency, policy traces. `alignheads.lab.figures` is the pipeline that computes data and writes figures/
with these.

Every function takes plain data (DataFrames, arrays, lists), returns a `matplotlib.figure.Figure`
and, with `save=PATH`, also writes it atomically (format from the suffix: .png, .pdf, .svg, ...).
Figures are built on `Figure` + the Agg canvas directly, never through pyplot, so importing this
module changes no backend and no global rcParams; Jupyter still shows a returned figure inline.
Chinese (and other CJK) text is drawn with a CJK font added as a per-figure fallback family,
so Latin text keeps the user's default font.
"""

from __future__ import annotations

from .attention import attention_map, attention_maps, colour_max, headset_overlap, row_argmax
from .heads import (
    aligner_comparison,
    depth_profile,
    head_heatmap,
    head_sets_side_by_side,
    headset_ablation,
    score_matrix,
    stability_scatter,
    top_heads,
)
from .simultaneous import STOP_STYLES, TOKEN_STYLES, alignatt_decisions, policy_trace, quality_latency
from .style import LOWER_IS_BETTER, METRIC_LABELS, SCORE_LABELS, cjk_font_family, save_figure

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
    "alignatt_decisions",
    "colour_max",
    "row_argmax",
    "LOWER_IS_BETTER",
    "SCORE_LABELS",
    "METRIC_LABELS",
    "STOP_STYLES",
    "TOKEN_STYLES",
]
