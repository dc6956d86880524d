"""The head explorer on a tiny Gemma-4 (KV-shared layers) scored on a few shipped pairs: state, drawing, export."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alignheads.base.errors import AlignheadsError
from alignheads.corpus.formats import read_corpus
from alignheads.heads.ensemble import ensemble_attention, ensemble_metrics
from alignheads.heads.headset import Head, load_headset
from alignheads.heads.scoring import ScoreConfig, score_heads
from alignheads.lab.explorer import HeadExplorer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scored(tiny4, one_thread):
    corpus = read_corpus(ROOT / "data" / "gold" / "en-de.dev.tsv")
    return score_heads(tiny4, corpus, config=ScoreConfig(limit=4, progress=False)), corpus


@pytest.fixture
def ex(scored, tiny4, tmp_path):
    scores, corpus = scored
    return HeadExplorer(scores, corpus, tiny4, heads=[(1, 0)], export_dir=tmp_path)


def _png(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_state_and_readout_follow_the_head_set(ex, scored):
    scores, corpus = scored
    assert ex.heads == [Head(1, 0, "own")]
    ex.select(2, 3)
    ex.add()
    ex.add()  # adding twice keeps one copy
    ex.add((0, 1, "emit"))
    assert ex.heads == [Head(1, 0), Head(2, 3), Head(0, 1, "emit")]
    m = ensemble_metrics(scores, corpus, ex.heads)
    assert ex.ensemble() == m
    assert f"ensemble AER {m['aer']:.3f}" in ex.readout() and "head set (3)" in ex.readout()
    ex.remove()  # the selected head
    ex.remove((1, 0))
    assert ex.heads == [Head(0, 1, "emit")]
    ex.remove((0, 1, "emit"))
    assert ex.ensemble() is None and ex.readout().startswith("head set empty")
    row = scores.heads.query("layer == 2 and head == 3 and query == 'own'").iloc[0]
    assert f"TS {row.ts:.3f}" in ex.head_info()


def test_bad_input_is_refused_with_a_clear_error(ex):
    with pytest.raises(AlignheadsError, match="outside 6 layers x 4 heads"):
        ex.select(6, 0)
    with pytest.raises(AlignheadsError, match="score must be one of"):
        ex.set_metric("bleu")
    with pytest.raises(AlignheadsError, match="query 'middle' was not scored"):
        ex.set_query("middle")
    with pytest.raises(AlignheadsError, match="out of range: 4 pairs"):
        ex.set_pair(4)
    with pytest.raises(AlignheadsError, match="was not scored"):
        ex.set_pair("no-such-pair")


def test_maps_show_the_selected_head_and_the_set_mean(ex, scored):
    scores, _ = scored
    first = ex.maps_png()
    ex.add((0, 3, "emit"))
    ex.select(3, 2)
    second = ex.maps_png()
    assert second != first and _png(second).size == _png(first).size  # redrawn in place, same layout
    fig = ex._maps[1]
    head_img, set_img = fig.axes[0].images[0], fig.axes[1].images[0]
    np.testing.assert_allclose(head_img.get_array().filled(np.nan), scores.word_attention[0].words[0, 3, 2])
    np.testing.assert_allclose(set_img.get_array().filled(np.nan), ensemble_attention(scores, ex.heads, 0))
    assert fig.axes[0].get_title().endswith("L3H2")
    ex.set_pair(2)
    ex.maps_png()
    fig2 = ex._maps[1]
    assert fig2 is not fig and [t.get_text() for t in fig2.axes[0].get_xticklabels()] == list(ex.pairs[2].src_words)
    ex.remove((1, 0))
    ex.remove((0, 3, "emit"))
    ex.maps_png()
    assert np.isnan(fig2.axes[1].images[0].get_array().filled(np.nan)).all()  # empty set: blank panel


def test_score_map_click_mapping_and_marks(ex, scored):
    scores, _ = scored
    ex.select(4, 1)
    png = _png(ex.heatmap_png())
    sm = ex._score_map()
    assert png.size == (int(sm.fig.bbox.width), int(sm.fig.bbox.height))
    for layer in range(scores.n_layers):
        for head in range(scores.n_heads):
            x, y = sm.ax.transData.transform((head, layer))
            assert ex.head_at(x, png.height - y) == Head(layer, head, "own")
    assert ex.head_at(1, 1) is None  # the figure's corner is outside the map
    # Marks: one per set member (red) plus the selected head (black), at their cells.
    cells = sorted((round(m.get_x() + m.get_width() / 2), round(m.get_y() + m.get_height() / 2)) for m in sm.marks)
    assert cells == sorted([(0, 1), (1, 4)])
    x, y = sm.ax.transData.transform((1 - 0.42, 4))  # the selected head's box edge is drawn black
    assert png.convert("RGB").getpixel((round(x), round(png.height - y))) == (0, 0, 0)
    before = ex.heatmap_png()
    ex.set_query("emit")
    assert ex.head == Head(4, 1, "emit") and ex.heatmap_png() != before


def test_export_writes_a_valid_head_set_file(ex, tiny4, tmp_path):
    ex.select(2, 2)
    ex.add()
    path = ex.export()
    assert path == tmp_path / "translation_heads_tiny-gemma4_en-de.json"
    hs = load_headset(path)
    hs.validate(tiny4.facts, ex.layout)
    assert {h.key for h in hs.heads} == {Head(1, 0), Head(2, 2)}
    ts = [h.ts for h in hs.heads]
    assert ts == sorted(ts, reverse=True)
    d = json.loads(path.read_text())
    assert d["score"]["selection"] == "manual" and d["evaluation"]["ensemble"] == pytest.approx(ex.ensemble())
    assert d["calibration"]["n_pairs_scored"] == 4 and "stability" in d
    with pytest.raises(AlignheadsError, match="ending in .json"):
        ex.export(tmp_path / "heads.txt")
    ex.heads.clear()
    with pytest.raises(AlignheadsError, match="empty"):
        ex.export(tmp_path / "empty.json")
    assert not (tmp_path / "empty.json").exists()


def test_widget_redraws_on_every_control(ex, tmp_path):
    pytest.importorskip("ipywidgets")
    bundle = ex._repr_mimebundle_()
    assert _png(base64.b64decode(bundle["image/png"])).width > 0
    assert "application/vnd.jupyter.widget-view+json" in bundle
    w = ex._widget
    maps, heat, readout = w.maps.value, w.heatmap.value, w.readout.value
    w.head.value = (w.head.value + 1) % 4
    assert w.maps.value != maps and w.heatmap.value != heat and ex.head.head == w.head.value
    sm = ex._score_map()
    x, y = sm.ax.transData.transform((3, 5))
    w._on_click({"dataX": x, "dataY": sm.fig.bbox.height - y})
    assert ex.head == Head(5, 3) and (w.layer.value, w.head.value) == (5, 3)
    assert not w.add.disabled and w.remove.disabled
    w.add.click()
    assert w.readout.value != readout and "head set (2)" in w.readout.value and w.add.disabled
    w.export.click()
    assert "wrote" in w.status.value and load_headset(tmp_path / "translation_heads_tiny-gemma4_en-de.json")
    w.remove.click()
    assert "head set (1)" in w.readout.value
    w.path.value = str(tmp_path / "bad.txt")
    w.export.click()
    assert "not exported" in w.status.value
    w.pair.value = 3
    assert ex.pair == 3
    w.metric.value = "aer"
    assert ex.metric == "aer"


def test_the_prefix_view_shows_readiness_only_when_scored(scored, tiny4, tmp_path):
    """Guards the explorer's prefix view (issue 21): a run scored in the prefix condition offers each head's
    readiness AUC as the score map; a whole-source run refuses it with the flag that would add it."""
    from copy import copy

    from alignheads.corpus.pairs import Corpus
    from alignheads.heads.calibrate import calibrate_border
    from alignheads.heads.headset import HeadEntry, HeadSet

    scores, corpus = scored
    plain = HeadExplorer(scores, corpus, tiny4, export_dir=tmp_path)
    assert "readiness_auc" not in plain.metrics
    with pytest.raises(AlignheadsError, match="--condition prefix"):
        plain.set_metric("readiness_auc")
    prefixed = copy(scores)
    f = tiny4.facts
    headset = HeadSet([HeadEntry(1, 0)], f.model_id, "en", "de", f.num_layers, f.num_heads)
    two = Corpus(list(corpus)[:2], corpus.src_lang, corpus.tgt_lang, name="two")
    calibrate_border(tiny4, two, headset, scores=prefixed, k=2, progress=False)
    ex = HeadExplorer(prefixed, corpus, tiny4, export_dir=tmp_path)
    ex.set_metric("readiness_auc")
    row = prefixed.heads.query("query == @ex.query").sort_values("readiness_auc").iloc[-1]
    ex.select(int(row["layer"]), int(row["head"]))
    assert _png(ex.heatmap_png()).size[0] > 0
    assert ex.metrics["readiness_auc"] == "readiness (prefix)"
