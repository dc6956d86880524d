"""Figures: structure of each plot, top-k marking, atomic saving, Chinese glyphs, no global matplotlib state."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from alignheads.base.errors import AlignheadsError, DataFormatError
from alignheads.lab import viz

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
L, H = 6, 4
# Planted best heads per query kind, best first; every other head scores below them.
PLANTED = {"own": [(3, 1), (1, 2), (4, 0)], "emit": [(2, 3), (3, 1), (0, 0)]}


def _scores() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    rows = []
    for q, best in PLANTED.items():
        for layer in range(L):
            for head in range(H):
                ts = rng.uniform(0.0, 0.2)
                if (layer, head) in best:
                    ts = 0.9 - 0.1 * best.index((layer, head))
                rows.append({"kind": "head", "query": q, "layer": layer, "head": head, "ts": ts, "aer": 1 - ts})
    rows.append({"kind": "diagonal", "query": "own", "layer": -1, "head": -1, "ts": 0.5, "aer": 0.5})
    return pd.DataFrame(rows)


def _gid(artists, gid):
    return [a for a in artists if a.get_gid() == gid]


def _rank_marks(ax) -> dict[tuple[int, int], int]:
    """(layer, head) -> rank from the rank numbers drawn on a heatmap panel."""
    return {(round(t.get_position()[1]), round(t.get_position()[0])): int(t.get_text())
            for t in _gid(ax.texts, "topk-rank")}


def _glyph_warnings(record) -> list[str]:
    return [str(w.message) for w in record if "missing from font" in str(w.message)]


# ----------------------------------------------------------------------------- score matrix / top heads


def test_score_matrix_fills_cells_and_skips_baseline_rows():
    df = _scores()
    m = viz.score_matrix(df, "ts", query="own")
    assert m.shape == (L, H)
    own = df[(df["query"] == "own") & (df["kind"] == "head")]
    for row in own.itertuples():
        assert m[row.layer, row.head] == row.ts
    partial = pd.DataFrame({"layer": [0, 2], "head": [1, 0], "ts": [0.5, 0.25]})
    p = viz.score_matrix(partial, "ts", n_layers=3, n_heads=2)
    assert p[0, 1] == 0.5 and p[2, 0] == 0.25 and np.isnan(p[1]).all()


@pytest.mark.parametrize(
    ("frame", "kwargs", "match"),
    [
        (pd.DataFrame({"layer": [0], "head": [0]}), {"column": "ts"}, "missing column"),
        (pd.DataFrame({"layer": [0, 0], "head": [1, 1], "ts": [0.1, 0.2]}), {}, "more than once"),
        (pd.DataFrame({"layer": [0.5], "head": [1], "ts": [0.1]}), {}, "expected an integer"),
        (pd.DataFrame({"layer": [0], "head": [1], "ts": ["high"]}), {}, "not a number"),
        (pd.DataFrame({"layer": [0], "head": [1], "ts": [0.1]}), {"query": "own"}, "no 'query' column"),
    ],
)
def test_score_matrix_rejects_bad_tables(frame, kwargs, match):
    with pytest.raises(DataFormatError if match != "no 'query' column" else AlignheadsError, match=match):
        viz.score_matrix(frame, **{"column": "ts", **kwargs})


def test_score_matrix_needs_a_query_when_several():
    with pytest.raises(AlignheadsError, match="pass query="):
        viz.score_matrix(_scores(), "ts")


def test_top_heads_order_ties_and_nan():
    m = np.array([[0.1, np.nan, 0.7], [0.7, 0.3, 0.0]])
    assert viz.top_heads(m, 3) == [(0, 2), (1, 0), (1, 1)]  # tie at 0.7 -> lower flat index first
    assert viz.top_heads(m, 2, lower_is_better=True) == [(1, 2), (0, 0)]
    assert len(viz.top_heads(m, 99)) == 5 and viz.top_heads(m, 0) == []


# ----------------------------------------------------------------------------- head heatmap


def test_head_heatmap_panels_topk_and_kv_shading(tmp_path):
    fig = viz.head_heatmap(_scores(), "ts", top_k=3, kv_shared_layers=[4, 5], save=tmp_path / "heat.png")
    assert isinstance(fig, Figure)
    panels = [ax for ax in fig.axes if ax.get_images()]
    assert len(panels) == 2 and len(fig.axes) == 3  # own, emit, shared colourbar
    assert [ax.get_title() for ax in panels] == ["query: own", "query: emit"]
    for ax, q in zip(panels, ("own", "emit"), strict=True):
        assert _rank_marks(ax) == {cell: r for r, cell in enumerate(PLANTED[q], start=1)}
        boxes = {(round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in _gid(ax.patches, "topk")}
        assert boxes == set(PLANTED[q])
        hatch = _gid(ax.patches, "kv-shared")
        assert len(hatch) == 1 and (hatch[0].get_y(), hatch[0].get_height()) == (3.5, 2)
        assert ax.get_images()[0].get_array().shape == (L, H)
        assert ax.get_ylim()[0] > ax.get_ylim()[1]  # layer 0 at the top
    assert "KV-shared layers (4–5)" in [t.get_text() for t in fig.legends[0].get_texts()]
    assert (tmp_path / "heat.png").read_bytes()[:8] == PNG_MAGIC


def test_head_heatmap_aer_marks_lowest_with_reversed_colormap():
    own = _scores().query("query == 'own'").drop(columns="query")
    fig = viz.head_heatmap(own, "aer", top_k=2)
    (ax,) = [a for a in fig.axes if a.get_images()]
    assert ax.get_images()[0].get_cmap().name.endswith("_r")
    assert _rank_marks(ax) == {PLANTED["own"][0]: 1, PLANTED["own"][1]: 2}
    assert "lower is better" in ax.get_title()


def test_head_heatmap_rejects_bad_input():
    with pytest.raises(AlignheadsError, match="kv_shared_layers"):
        viz.head_heatmap(_scores(), kv_shared_layers=[L])
    with pytest.raises(DataFormatError, match="missing column"):
        viz.head_heatmap(_scores(), "bleu")


# ----------------------------------------------------------------------------- attention map


SRC = "The cat sleeps on the sofa .".split()
TGT = "猫 在 沙发 上 睡觉 。".split()


def _weights() -> np.ndarray:
    w = np.full((len(TGT), len(SRC)), 0.02)
    for t, s in enumerate([1, 3, 5, 3, 2, 6]):
        w[t, s] = 0.8
    return w


def test_attention_map_links_argmax_and_labels():
    sure, possible = [(1, 0), (5, 2), (2, 4)], [(4, 2), (1, 0)]  # (1, 0) is both: drawn as sure only
    fig = viz.attention_map(_weights(), SRC, TGT, sure=sure, possible=possible, title="L11H3")
    ax = fig.axes[0]
    assert len(fig.axes) == 2  # map + colourbar
    assert [t.get_text() for t in ax.get_xticklabels()] == SRC
    assert [t.get_text() for t in ax.get_yticklabels()] == TGT
    cells = lambda gid: {(round(p.get_x() + 0.45), round(p.get_y() + 0.45)) for p in _gid(ax.patches, gid)}  # noqa: E731
    assert cells("sure") == set(sure) and cells("possible") == {(4, 2)}
    (dots,) = _gid(ax.lines, "argmax")
    assert list(dots.get_xdata()) == [1, 3, 5, 3, 2, 6] and list(dots.get_ydata()) == list(range(len(TGT)))
    assert ax.get_title() == "L11H3"


def test_attention_map_rejects_mismatched_shapes_and_links():
    with pytest.raises(AlignheadsError, match=r"expected \[n_tgt_words, n_src_words\] = \[6, 7\]"):
        viz.attention_map(_weights().T, SRC, TGT)
    with pytest.raises(AlignheadsError, match=r"sure link \(7, 0\) outside"):
        viz.attention_map(_weights(), SRC, TGT, sure=[(7, 0)])


def test_chinese_labels_render_without_missing_glyphs(monkeypatch):
    assert viz.cjk_font_family() is not None, "no CJK font: install zhplot==1.0.0 (ships Noto Sans SC)"
    family_before = list(mpl.rcParams["font.family"])
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fig = viz.attention_map(_weights(), SRC, TGT)
        fig.savefig(io.BytesIO(), format="png")
        # A later redraw outside the function (as Jupyter's inline display does) keeps the fallback.
        fig.savefig(io.BytesIO(), format="png")
    assert _glyph_warnings(record) == []
    assert fig.axes[0].get_yticklabels()[0].get_fontfamily()[-1] == viz.cjk_font_family()
    assert mpl.rcParams["font.family"] == family_before  # global state untouched

    # The same check catches missing glyphs when the fallback is absent.
    monkeypatch.setattr(viz.style, "cjk_font_family", lambda: None)  # where the figures look it up
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        viz.attention_map(_weights(), SRC, TGT).savefig(io.BytesIO(), format="png")
    assert _glyph_warnings(record), "expected matplotlib to report missing Chinese glyphs without the fallback"
    assert any("no font with Chinese glyphs" in str(w.message) for w in record)


# ----------------------------------------------------------------------------- head-set overlap


def test_headset_overlap_grid_and_intersections():
    kernel = [(5, 0), (6, 5), (11, 3)]
    sets = {"en-de": kernel + [(10, 4)], "en-it": kernel + [(14, 1)], "en-zh": kernel + [(10, 4)]}
    fig = viz.headset_overlap(sets, n_layers=20, n_heads=8)
    grid = next(ax for ax in fig.axes if ax.get_images())
    count = grid.get_images()[0].get_array()
    assert count.shape == (20, 8) and count[5, 0] == 3 and count[10, 4] == 2 and count[14, 1] == 1
    assert count.sum() == 12
    shared = {(round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in _gid(grid.patches, "shared-kernel")}
    assert shared == set(kernel)
    for name, heads in sets.items():
        (dots,) = _gid(grid.lines, f"set:{name}")
        assert sorted(dots.get_ydata()) == sorted(layer for layer, _ in heads)
    bars = [p for ax in fig.axes for p in _gid(ax.patches, "intersections")]
    assert [b.get_height() for b in bars] == [3, 1, 1]  # all three; de and zh; it only
    (listing,) = [t for ax in fig.axes for t in _gid(ax.texts, "intersection-list")]
    assert "en-de ∩ en-it ∩ en-zh: (5,0) (6,5) (11,3)" in listing.get_text().replace("\n   ", " ")
    assert "en-de ∩ en-zh: (10,4)\nen-it only: (14,1)" in listing.get_text()


def test_headset_overlap_rejects_heads_outside_the_model():
    with pytest.raises(AlignheadsError, match=r"'en-de'.*layer 42.*42 layers x 8 heads"):
        viz.headset_overlap({"en-de": [(42, 0)]}, n_layers=42, n_heads=8)


# ----------------------------------------------------------------------------- stability scatter


def test_stability_scatter_marks_each_splits_topk_and_max_delta():
    a = np.array([[0.9, 0.1, 0.05], [0.8, 0.7, 0.02]])
    b = np.array([[0.88, 0.75, 0.04], [0.81, 0.3, 0.03]])  # head (0,1) rises into B's top 3, (1,1) falls out
    fig = viz.stability_scatter(a, b, top_k=3)
    ax = fig.axes[0]
    assert {t.get_text() for t in _gid(ax.texts, "top-label")} == {"L0H0", "L1H0", "L1H1", "L0H1"}
    both, only_a, only_b = (_gid(ax.collections, g) for g in ("top-both", "top-a", "top-b"))
    assert len(both[0].get_offsets()) == 2 and tuple(only_a[0].get_offsets()[0]) == (0.7, 0.3)
    assert tuple(only_b[0].get_offsets()[0]) == (0.1, 0.75)
    (note,) = _gid(ax.texts, "max-delta")
    assert "0.650" in note.get_text() and "L0H1" in note.get_text()
    assert "top 3 differ (2/3 shared)" in ax.get_title() and "> 0.03" in ax.get_title()
    same = viz.stability_scatter(a, a + 0.01, top_k=3)
    assert "top 3 identical, max |ΔTS| ≤ 0.03" in same.axes[0].get_title()
    with pytest.raises(AlignheadsError, match="different shapes"):
        viz.stability_scatter(a, b.ravel())


# ----------------------------------------------------------------------------- quality vs latency


def test_quality_latency_one_line_per_policy_sorted_by_param():
    curves = pd.DataFrame({
        "policy": ["alignatt"] * 3 + ["wait-k"] * 2,
        "param": [4, 2, 3, 1, 3],
        "laal_cu": [2.9, 1.6, 2.2, 1.2, 2.5],
        "bleu": [28.0, 24.0, 26.5, 15.0, 20.0],
    })
    fig = viz.quality_latency(curves)
    ax = fig.axes[0]
    (line,) = _gid(ax.lines, "policy:alignatt")
    assert list(line.get_xdata()) == [1.6, 2.2, 2.9] and list(line.get_ydata()) == [24.0, 26.5, 28.0]
    assert len(_gid(ax.lines, "policy:wait-k")) == 1
    assert sorted(t.get_text() for t in _gid(ax.texts, "param-label")) == ["1", "2", "3", "3", "4"]
    assert ax.get_xlabel().startswith("LAAL") and ax.get_ylabel() == "BLEU"
    with pytest.raises(DataFormatError, match="bleu=nan|not a number"):
        viz.quality_latency(curves.assign(bleu=[1.0, None, 2.0, 3.0, 4.0]))


def test_a_parameter_free_point_carries_no_label():
    """Local agreement has no swept parameter (NaN in a curves table): its point is drawn, never labelled "nan"."""
    curves = pd.DataFrame({"policy": ["alignatt", "alignatt", "local-agreement"], "param": [-2, -3, np.nan],
                           "laal_cu": [2.4, 3.3, 2.2], "bleu": [20.0, 21.0, 19.7]})
    ax = viz.quality_latency(curves).axes[0]
    assert len(_gid(ax.lines, "policy:local-agreement")) == 1
    assert sorted(t.get_text() for t in _gid(ax.texts, "param-label")) == ["-2", "-3"]


# ----------------------------------------------------------------------------- policy trace


def _trace() -> pd.DataFrame:
    return pd.DataFrame({
        "time": [1.7, 1.7, 2.6, 3.4, 3.4, 4.3],
        "source_available": [3, 3, 5, 7, 7, 9],
        "target_index": [0, 1, 2, 3, 4, 5],
        "text": ["我们", "今天", "讨论", "注意力", "头", "。"],
        "stop_reason": [None, "future_source", "rewind", None, "future_source", "final"],
    })


def test_policy_trace_steps_and_stop_reasons():
    fig = viz.policy_trace(_trace())
    ax = fig.axes[0]
    (emitted,) = _gid(ax.lines, "target-emitted")
    assert list(emitted.get_ydata()) == [0, 1, 2, 3, 4, 5, 6]
    (source,) = _gid(ax.lines, "source-available")
    assert list(source.get_ydata()) == [3, 3, 5, 7, 7, 9]
    stops = {a.get_gid(): [tuple(o) for o in a.get_offsets()]
             for a in ax.collections if str(a.get_gid()).startswith("stop:")}
    assert stops == {"stop:future_source": [(1.7, 2), (3.4, 5)], "stop:rewind": [(2.6, 3)], "stop:final": [(4.3, 6)]}
    assert [t.get_text() for t in _gid(ax.texts, "unit-text")] == list(_trace()["text"])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "stopped: needs future source (2)" in legend


def test_policy_trace_rejects_time_going_back_and_missing_columns():
    bad = _trace()
    bad.loc[3, "time"] = 2.0
    with pytest.raises(DataFormatError, match="target_index 3 emitted at time 2, before target_index 2"):
        viz.policy_trace(bad)
    with pytest.raises(DataFormatError, match="missing column.*'stop_reason'"):
        viz.policy_trace(_trace().drop(columns="stop_reason"))


# ----------------------------------------------------------------------------- saving


def test_save_is_atomic_and_checks_the_format(tmp_path, monkeypatch):
    target = tmp_path / "out" / "trace.png"
    fig = viz.policy_trace(_trace(), save=target)
    assert target.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in target.parent.iterdir()] == ["trace.png"]  # no temp file left behind
    with pytest.raises(AlignheadsError, match=r"cannot save a figure as '\.docx'"):
        viz.save_figure(fig, tmp_path / "trace.docx")
    assert not (tmp_path / "trace.docx").exists()

    def broken_savefig(self, f, **kwargs):
        f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        viz.save_figure(fig, target)
    assert target.read_bytes()[:8] == PNG_MAGIC  # the old file is untouched
    assert [p.name for p in target.parent.iterdir()] == ["trace.png"]


@pytest.mark.slow  # a fresh interpreter
def test_import_leaves_pyplot_backend_and_rcparams_alone():
    code = (
        "import sys, matplotlib as mpl; snap = lambda: {k: mpl.rcParams[k] for k in mpl.rcParams if k != 'backend'}; "
        "before = snap(); import alignheads.lab.viz as v; "
        "import pandas as pd; v.quality_latency(pd.DataFrame({'policy': ['a'], 'param': [1], 'laal_cu': [1.0], "
        "'bleu': [2.0]})); "
        "assert 'matplotlib.pyplot' not in sys.modules and 'zhplot' not in sys.modules; "
        "assert snap() == before"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
