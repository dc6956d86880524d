"""Saved quality-latency sweeps are loaded only when they come from the computation the notebook would run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignheads.data import read_corpus
from alignheads.headset import HeadEntry, HeadSet
from alignheads.saved import saved_quality_latency

ROOT = Path(__file__).resolve().parents[1]
GRID = {"alignatt": [1, 0], "wait-k": [3]}
CURVES = [{"policy": "alignatt", "param": 1, "bleu": 3.5, "laal_cu": 0.9},
          {"policy": "wait-k", "param": 3, "bleu": 5.0, "laal_cu": 1.4}]


@pytest.fixture
def setup(tmp_path):
    corpus = read_corpus(ROOT / "data" / "gold" / "en-de.test.tsv")
    hs = HeadSet([HeadEntry(11, 2, ts=0.4, query="emit"), HeadEntry(3, 3, ts=0.3)], "m", "en", "de", 18, 4)
    manifest = {"command": "python -m alignheads.figures", "model": {"model_id": "m"},
                "config": {"ql_pace": 0.4, "ql_limit": 6, "ql_grid": GRID},
                "data": {"en-de": {"held_out": {"hash": corpus.content_hash()}}},
                "headsets": {"en-de": {"heads": ["L11H2@emit", "L3H3"]}}, "quality_latency": {"en-de": CURVES}}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest))
    kw = {"model_id": "m", "corpus": corpus, "headset": hs, "pace": 0.4, "limit": 6, "grid": GRID}
    return path, manifest, kw


def test_loads_the_same_computation(setup):
    path, _, kw = setup
    curves, note = saved_quality_latency(path, "en-de", **kw)
    assert curves.to_dict("records") == CURVES and "loaded from" in note


@pytest.mark.parametrize(("change", "why"), [
    ({"model_id": "other"}, "model"), ({"pace": 0.5}, "pace"), ({"limit": 2}, "sentences"),
    ({"grid": {"alignatt": [1]}}, "policy grid"),
])
def test_any_difference_recomputes(setup, change, why):
    path, _, kw = setup
    curves, note = saved_quality_latency(path, "en-de", **{**kw, **change})
    assert curves is None and why in note


def test_other_heads_corpus_or_missing_file_recompute(setup, tmp_path):
    path, manifest, kw = setup
    other = HeadSet([HeadEntry(3, 3, ts=0.3)], "m", "en", "de", 18, 4)
    assert "head set" in saved_quality_latency(path, "en-de", **{**kw, "headset": other})[1]
    assert "held-out corpus" in saved_quality_latency(path, "en-de", **{**kw, "corpus": kw["corpus"].head(3)})[1]
    curves, note = saved_quality_latency(tmp_path / "none.json", "en-de", **kw)
    assert curves is None and "no saved results" in note
    curves, note = saved_quality_latency(path, "en-zh", **kw)
    assert curves is None and "not a figures manifest" in note
    path.write_text("{")
    assert saved_quality_latency(path, "en-de", **kw)[0] is None
