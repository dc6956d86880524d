"""Selection, stability gate, the head-set file and the registry of published heads."""

from __future__ import annotations

import json

import pytest

from alignheads.corpus.formats import read_corpus
from alignheads.heads.calibrate import calibrate, evaluate_headset
from alignheads.heads.ensemble import ensemble_metrics
from alignheads.heads.headset import Head, HeadEntry, HeadSet, HeadSetError, headset_filename, load_headset
from alignheads.heads.registry import published_headset
from alignheads.heads.scoring import ScoreConfig
from alignheads.heads.selection import SelectionConfig, select_heads, topk_by_ts
from alignheads.model.loader import ModelFacts
from alignheads.model.prompts import PromptLayout
from tests.conftest import ROOT

QUIET = ScoreConfig(progress=False)


@pytest.fixture(scope="module")
def calibrated(embedded):
    corpus = read_corpus(ROOT / "data" / "gold" / "en-it.dev.tsv").head(16)
    return corpus, *calibrate(embedded, corpus, score_cfg=QUIET)


def test_greedy_ensemble_is_no_worse_than_its_best_single_head(calibrated):
    corpus, scores, selection, headset = calibrated
    traj = selection.trajectory
    assert len(selection.heads) >= 1 and list(traj["step"]) == list(range(1, len(traj) + 1))
    assert traj["aer"].is_monotonic_decreasing
    best_single = scores.heads[scores.heads["ts"] > 0.1]["aer"].min()
    assert traj["aer"].iloc[-1] <= best_single + 1e-12
    assert ensemble_metrics(scores, corpus, selection.heads)["aer"] == pytest.approx(traj["aer"].iloc[-1])


def test_topk_is_the_papers_rule(calibrated):
    _, scores, _, _ = calibrated
    heads = topk_by_ts(scores, k=3)
    own = scores.heads[scores.heads["query"] == "own"].sort_values("ts", ascending=False)
    assert [(h.layer, h.head) for h in heads] == list(zip(own["layer"][:3], own["head"][:3], strict=True))
    sel = select_heads(scores, calibrated[0], SelectionConfig(method="topk", k=3))
    assert sel.heads == heads and len(sel.trajectory) == 3


def test_stability_verdict_is_recorded_and_deterministic(calibrated):
    corpus, scores, selection, headset = calibrated
    again = select_heads(scores, corpus, selection.config)
    assert again.stability == selection.stability
    assert headset.stability == selection.stability and headset.promoted == selection.stability["passed"]
    assert len(selection.stability["splits"]) == 2
    for split in selection.stability["splits"]:
        assert split["passed"] == (split["identical_topk"] and split["max_abs_delta_ts"] <= 0.03)


def test_headset_file_roundtrip_and_provenance(calibrated, embedded, tmp_path):
    corpus, scores, selection, headset = calibrated
    name = headset_filename(embedded.facts.model_id, "en", "it")
    assert name == "translation_heads_gemma-3-270m-Q4_K_M_en-it.json"
    path = headset.save(tmp_path / name)
    raw = json.loads(path.read_text())
    ts = [h["ts"] for h in raw["token_alignment_heads"]]
    assert ts == sorted(ts, reverse=True) and all({"layer", "head", "ts", "count"} <= set(h)
                                                  for h in raw["token_alignment_heads"])
    assert raw["calibration"]["content_hash"] == corpus.content_hash()
    assert raw["calibration"]["n_pairs_scored"] == 16 and raw["num_layers"] == 18
    assert len(raw["scores"]["ts"]["own"]) == 18 and "stability" in raw and "promoted" in raw
    assert raw["layout"]["family"] == "completion"
    loaded = load_headset(path)
    assert loaded.top() == [h.key for h in headset.heads]
    loaded.validate(embedded.facts, PromptLayout.from_dict(raw["layout"]))


def test_validation_fails_loudly(calibrated, embedded, tiny4):
    headset = calibrated[3]
    with pytest.raises(HeadSetError, match="wrong model"):
        headset.validate(tiny4.facts)
    bad = HeadSet([HeadEntry(30, 0)], embedded.facts.model_id, "en", "it", 18, 4)
    with pytest.raises(HeadSetError, match="out of range"):
        bad.validate(embedded.facts)
    with pytest.raises(HeadSetError, match="prompt layout"):
        headset.validate(embedded.facts, PromptLayout("en", "it", family="completion", examples=(("a", "b"),)))


def test_heads_eval_warns_on_calibration_data(calibrated, embedded):
    corpus, _, _, headset = calibrated
    with pytest.warns(UserWarning, match="calibrated on"):
        result = evaluate_headset(embedded, headset, corpus.head(16), score_cfg=QUIET)
    assert result["calibrated_on_same_data"] and result["aer"] < result["diagonal"]["aer"]


def test_load_errors_and_minimal_format(tmp_path):
    p = tmp_path / "h.json"
    p.write_text("{not json")
    with pytest.raises(HeadSetError, match="not a JSON"):
        load_headset(p)
    p.write_text(json.dumps({"token_alignment_heads": [{"layer": "x", "head": 1}]}))
    with pytest.raises(HeadSetError, match=r"token_alignment_heads\[0\]"):
        load_headset(p)
    p.write_text(json.dumps({"token_alignment_heads": [{"layer": 11, "head": 3, "ts": 0.8, "count": 10}]}))
    with pytest.warns(UserWarning, match="minimal"):
        minimal = load_headset(p)
    assert minimal.top() == [Head(11, 3)]
    with pytest.raises(HeadSetError, match="no such"):
        load_headset(tmp_path / "missing.json")


def _gemma4_facts(layers=42, heads=8):
    return ModelFacts("google/gemma-4-E4B-it", None, "Gemma4ForConditionalGeneration", layers, heads,
                      (2,) * layers, (256,) * layers, ("sliding_attention",) * layers, 512)


def test_published_gemma4_heads_fit_the_model_shape():
    hs = published_headset("google/gemma-4-E4B-it", "en", "de")
    assert hs.top(2) == [Head(11, 3), Head(6, 5)] and hs.heads[0].ts == pytest.approx(0.833, abs=5e-4)
    assert "IWSLT 2026" in hs.source
    hs.validate(_gemma4_facts())
    assert set(published_headset("google/gemma-4-e4b-it", "en", "zh").top(7)) == set(published_headset(
        "google/gemma-4-E4B-it", "en", "it").top(7))  # the same 7 heads, each direction sorted by its own ts
    with pytest.raises(HeadSetError, match="wrong model"):
        hs.validate(_gemma4_facts(layers=4))
    with pytest.raises(HeadSetError, match="known"):
        published_headset("google/gemma-4-E4B-it", "en", "ro")


# ---------------------------------------------------------------- never a meaningless head set (tiny models)

@pytest.fixture(scope="module")
def tiny_calibrated(tiny3):
    corpus = read_corpus(ROOT / "data" / "gold" / "en-de.dev.tsv").head(3)
    return corpus, *calibrate(tiny3, corpus, score_cfg=QUIET, select_cfg=SelectionConfig(threshold=0))


def test_an_empty_selection_is_an_error_not_a_file(tiny3, tiny_calibrated, tmp_path):
    corpus = tiny_calibrated[0]
    with pytest.raises(HeadSetError, match=r"no head was selected on 3 pair\(s\).*best: L\d+H\d+(@emit)? with ts"):
        calibrate(tiny3, corpus, score_cfg=QUIET, select_cfg=SelectionConfig(threshold=1.0))
    empty = HeadSet([], "tiny-gemma3", "en", "de", 6, 4)
    with pytest.raises(HeadSetError, match="no heads"):
        empty.save(tmp_path / "h.json")
    assert not (tmp_path / "h.json").exists()
    (tmp_path / "h.json").write_text(json.dumps({"token_alignment_heads": []}))
    with pytest.raises(HeadSetError, match="is empty"):
        load_headset(tmp_path / "h.json")


@pytest.mark.parametrize("k", [0, -1, 1.5])
def test_top_k_must_be_a_positive_number_of_heads(tiny3, tiny_calibrated, k):
    """Reported: --top-k -1 silently dropped the last head; --top-k 0 crashed heads-eval after scoring."""
    corpus, _, _, headset = tiny_calibrated
    with pytest.raises(HeadSetError, match="top-k must be a whole number of heads >= 1"):
        headset.top(k)
    with pytest.raises(HeadSetError, match="top-k"):
        evaluate_headset(tiny3, headset, corpus, top_k=k, score_cfg=QUIET)


def test_a_head_set_of_another_model_with_the_same_shape_is_refused(tiny3, tiny4, tiny_calibrated, tmp_path):
    """Reported: heads-eval accepted it (shape only); translate refused it with a hint at a Python argument."""
    from alignheads.simul.translator import SimultaneousTranslator

    corpus, _, _, headset = tiny_calibrated
    assert (tiny3.facts.num_layers, tiny3.facts.num_heads) == (tiny4.facts.num_layers, tiny4.facts.num_heads)
    loaded = load_headset(headset.save(tmp_path / "h.json"))
    assert loaded.model_fingerprint == tiny3.facts.fingerprint
    loaded.validate(tiny3.facts)
    with pytest.raises(HeadSetError, match=r"fingerprints \(config \+ tokenizer\).*although the shapes match"):
        evaluate_headset(tiny4, loaded, corpus, score_cfg=QUIET)
    with pytest.raises(HeadSetError, match="fingerprints") as err:
        SimultaneousTranslator(tiny4, loaded, "en", "de")
    assert "strict_model" not in str(err.value) and "alignheads score --model tiny-gemma4" in str(err.value)
    # Files without a fingerprint (the authors', the registry's) fall back to the model id, and say so.
    loaded.model_fingerprint = None
    with pytest.raises(HeadSetError, match="records no model fingerprint, so only the model id and shape"):
        loaded.validate(tiny4.facts)


def test_a_file_written_by_an_earlier_version_still_loads():
    """Head-set files in the wild keep loading: tests/data holds one `alignheads score` wrote before the stages moved
    (its schema string names the file format, not a module path)."""
    hs = load_headset(ROOT / "tests" / "data" / "translation_heads_written_by_v0.1.json")
    assert hs.top() and hs.src_lang == "en" and hs.tgt_lang == "de"


def test_the_file_records_the_dtype_its_attention_was_scored_in(tiny_calibrated, tmp_path):
    headset = tiny_calibrated[3]
    assert headset.calibration["dtype"] == "float32"
    assert load_headset(headset.save(tmp_path / "h.json")).calibration["dtype"] == "float32"


def test_the_loader_bounds_what_a_file_can_ask_for(tmp_path):
    """Reported: 10,000 copies of the model's heads used 1.4 GB, the same head thrice was used thrice, top_k -1
    dropped the last head silently, a FIFO as the path hung. Now: a cap, repeats dropped with a warning, top_k >= 1
    (clamped when above the heads listed), only regular files."""
    import os

    base = HeadSet([HeadEntry(2, 1), HeadEntry(5, 0, query="emit")], "tiny", "en", "de", 6, 4).to_dict()

    def write(**changes):
        path = tmp_path / "h.json"
        path.write_text(json.dumps({**base, **changes}))
        return path

    with pytest.raises(HeadSetError, match=r"more than the model has \(6 layers x 4 heads x 2"):
        load_headset(write(token_alignment_heads=base["token_alignment_heads"] * 30))
    with pytest.warns(UserWarning, match="2 repeated head"):
        hs = load_headset(write(token_alignment_heads=base["token_alignment_heads"] * 2))
    assert [str(h) for h in hs.top()] == ["L2H1", "L5H0@emit"]
    for bad in (0, -1):
        with pytest.raises(HeadSetError, match="top_k must be a whole number of heads >= 1"):
            load_headset(write(top_k=bad))
    with pytest.warns(UserWarning, match="top_k 8 is more than the 2 heads"):
        assert load_headset(write(top_k=8)).top_k == 2
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    with pytest.raises(HeadSetError, match="not a regular file"):
        load_headset(fifo)
    with pytest.raises(HeadSetError, match="not a regular file"):
        load_headset(tmp_path)
