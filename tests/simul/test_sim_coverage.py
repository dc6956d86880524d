"""simulate writes coverage.json and reports what stopped each update (issue 11, items 1 and 2)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from alignheads.corpus.formats import read_corpus
from alignheads.heads.headset import Head
from alignheads.simul.policy import AlignAttConfig
from alignheads.simul.simulate import SimulationConfig, simulate
from alignheads.simul.sweep import quality_latency
from alignheads.simul.translator import TranslatorConfig
from tests.scripted import scripted_model

ROOT = Path(__file__).resolve().parents[2]
HEADS = [Head(2, 1), Head(5, 0, "emit"), Head(0, 3)]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def it2():
    return read_corpus(ROOT / "data" / "gold" / "en-it.test.tsv").head(2)


@pytest.mark.model
@pytest.mark.parametrize("policy", ["alignatt", "wait-k"])
def test_a_model_that_ends_early_is_caught_by_coverage_not_by_timing(it2, tmp_path, policy):
    """The scripted model drafts "Il modello." from the first word: the sentence end is held to the final pass
    (nothing ends early), and coverage flags the sentences as too short for their source."""
    lm = scripted_model(" Il modello.", "eos")
    cfg = TranslatorConfig(alignatt=AlignAttConfig(border=1, max_draft=6), wait_k=2, final_max_tokens=12,
                           final_min_ratio=0.0)  # the final pass may stop at once: coverage must catch it
    res = simulate(lm, it2, HEADS, policy, cfg, SimulationConfig(progress=False), out_dir=tmp_path)
    cov = json.loads((tmp_path / "coverage.json").read_text())
    assert cov["n_sentences"] == 2 and cov["flag_counts"]["ended_early"] == 0
    assert cov["flag_counts"]["short"] == 2 and cov["n_flagged"] == 2
    for s, ins in zip(cov["sentences"], res.instances, strict=True):
        assert s["accessible_at_end"] == ins.source_length >= s["last_word"]
        assert s["target"] == ins.prediction == "Il modello." and s["offline"] == "Il modello."
        assert s["chrf_offline"] == pytest.approx(100.0)
    shares = res.scores["decisions"]
    assert shares["sentence_end"] > 0 and shares["updates"] > 0
    assert shares["stop_rule"] + shares["sentence_end"] + shares["end_of_draft"] == pytest.approx(1.0)
    assert res.scores["coverage"]["n_flagged"] == 2


def test_sweep_reports_stop_shares_and_flags(tiny3, it2):
    table = quality_latency(tiny3, it2, HEADS, {"alignatt": [-1, 1], "cut-last": [1]},
                            TranslatorConfig(alignatt=AlignAttConfig(max_draft=4, rewind=0), final_max_tokens=8),
                            SimulationConfig(progress=False))
    assert table["stop_share"].between(0, 1).all() and table["n_flagged"].between(0, 2).all()
    border = table.set_index(["policy", "param"])["stop_share"]
    # without a hold-back (and with the rewind gate off) no token can attend two words beyond the heard ones
    assert border[("alignatt", 1)] == 0.0
    assert border[("alignatt", -1)] > 0.0


@pytest.mark.slow
def test_cli_prints_the_flagged_count(tmp_path):
    r = subprocess.run([sys.executable, "-m", "alignheads", "simulate", "--model", "tiny-gemma3", "--policy",
                        "wait-k", "--data", ROOT / "data" / "gold" / "en-it.test.tsv", "--limit", "1",
                        "--max-draft", "3", "--final-max-tokens", "6", "--threads", "1", "--out", tmp_path],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads(r.stdout)["coverage"]["n_sentences"] == 1
    assert "coverage: " in r.stderr and "sentences flagged" in r.stderr
    assert json.loads((tmp_path / "coverage.json").read_text())["sentences"][0]["offline"] is not None


@pytest.mark.slow
def test_policy_eval_cli_realistic_condition(tmp_path):
    r = subprocess.run([sys.executable, "-m", "alignheads", "score", "--model", "tiny-gemma3", "--data",
                        ROOT / "data" / "gold" / "en-it.dev.tsv", "--src", "en", "--tgt", "it", "--limit", "2",
                        "--threshold", "0", "--threads", "1", "--out", tmp_path], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    heads = next(tmp_path.glob("translation_heads_*.json"))
    r = subprocess.run([sys.executable, "-m", "alignheads", "policy-eval", "--model", "tiny-gemma3", "--heads",
                        heads, "--data", ROOT / "data" / "gold" / "en-it.test.tsv", "--limit", "2",
                        "--pending-words", "1", "--threads", "1"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout)
    assert result["pending"] == 1 and result["selected"]["n_words"] > 0


def test_a_border_that_can_never_fire_is_reported(tiny3, it2):
    cfg = TranslatorConfig(alignatt=AlignAttConfig(border=1, max_draft=2), final_max_tokens=4)
    one = it2.head(1)
    with pytest.warns(UserWarning, match="b=1 never stops a draft"):
        simulate(tiny3, one, HEADS, "alignatt", cfg, SimulationConfig(progress=False))
    with pytest.warns(UserWarning, match=r"only b <= 0 can fire"):  # one word held back: b = 1 still cannot
        simulate(tiny3, one, HEADS, "alignatt", replace(cfg, holdback=0.25), SimulationConfig(progress=False))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simulate(tiny3, one, HEADS, "alignatt", replace(cfg, holdback=0.25, alignatt=AlignAttConfig(border=0,
                 max_draft=2)), SimulationConfig(progress=False))
