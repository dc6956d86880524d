"""Policy comparison records (bench_policies' cache): resume, summaries, the traced sentence and its figures."""

from __future__ import annotations

import json

import pytest

from alignheads.heads.headset import Head
from alignheads.lab import viz
from alignheads.lab.figures import load_direction
from alignheads.simul.comparison import (
    dataset_summary,
    pick_trace,
    refresh_coverage,
    setting_label,
    trace_frames,
)
from alignheads.simul.policy import AlignAttConfig
from alignheads.simul.sweep import run_setting
from alignheads.simul.translator import TranslatorConfig

HEADS = [Head(2, 1), Head(5, 0, "emit")]
FAST = TranslatorConfig(alignatt=AlignAttConfig(max_draft=4), final_max_tokens=8)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def records(tiny3, tmp_path_factory):
    corpus = load_direction("en-de", "test", limit=2)
    out = tmp_path_factory.mktemp("records")
    recs = {}
    for policy, value, hb in (("alignatt", -1, 0.0), ("alignatt", 0, 0.25), ("wait-k", 1, 0.0), ("wait-k", 3, 0.0),
                              ("local-agreement", None, 0.0)):
        recs[(policy, value, hb)] = run_setting(tiny3, corpus, HEADS, policy, value, hb,
                                                out / f"{setting_label(policy, value, hb)}.json", dataset="en-de",
                                                traced=2, base=FAST)
    return corpus, out, recs


def test_a_record_is_reused_until_its_inputs_change(tiny3, records):
    corpus, out, recs = records
    record, fresh = recs[("wait-k", 1, 0.0)]
    assert fresh and record["curve"] == "wait-k" and len(record["predictions"]) == 2
    path = out / "wait-k_1.json"
    again, fresh = run_setting(tiny3, corpus, HEADS, "wait-k", 1, 0.0, path, dataset="en-de", traced=2, base=FAST)
    assert not fresh and again == record
    other, fresh = run_setting(tiny3, corpus.head(1), HEADS, "wait-k", 1, 0.0, path, dataset="en-de", base=FAST)
    assert fresh and len(other["predictions"]) == 1  # other data: recomputed, not served stale
    held = recs[("alignatt", 0, 0.25)][0]
    assert held["curve"] == "alignatt (hold-back 0.25 s)" and held["scores"]["holdback_s"] == 0.25


def test_summary_curves_significance_and_the_traced_sentence(records, tmp_path):
    _, out, recs = records
    rows = [r for r, _ in recs.values()]
    part = dataset_summary(rows, "de", out, tmp_path, n_samples=50)
    curves = {(c["policy"], c["param"]) for c in part["curves"]}
    assert ("alignatt (hold-back 0.25 s)", 0) in curves and ("local-agreement", None) in curves
    assert all(0 <= c["stop_share"] <= 1 for c in part["curves"])
    for row in part["significance"]:
        assert row["delta"] == pytest.approx(row["alignatt_score"] - row["baseline_score"], abs=0.011)
        assert row["ci95"][0] <= row["ci95"][1] and 0 < row["p_value"] <= 1
    offsets = part["attention_offsets"]
    assert {(o["policy"], o["param"]) for o in offsets} <= {("alignatt", -1), ("alignatt (hold-back 0.25 s)", 0)}
    for o in offsets:
        assert o["updates"] > 0
        assert o["older"] + o["second_newest"] + o["newest"] + o["not_accessible"] == pytest.approx(1.0)
        if o["policy"] == "alignatt":  # without a hold-back every word shown is accessible
            assert o["not_accessible"] == 0
    traced = pick_trace(rows)
    assert traced == {k: v for k, v in part["traced"].items() if k != "file"}
    assert json.loads((tmp_path / part["traced"]["file"]).read_text())["policy"] == "alignatt"


def test_cached_flags_are_recounted_under_the_current_rules(records):
    corpus, _, recs = records
    record = recs[("wait-k", 3, 0.0)][0]
    sources = [list(p.src_words) for p in corpus]
    assert refresh_coverage(record, sources)["coverage"] == record["coverage"]  # fresh: nothing changes
    # a record saved when a final "." token still had to be accessible before the translation could end
    old = json.loads(json.dumps(record))
    entry = old["coverage"][0]
    n = len(sources[0])
    assert sources[0][-1] == "."
    assert entry["accessible_at_end"] == n  # (the tiny model adds text in the final pass)
    entry.update(accessible_at_end=n - 1, flags=["ended_early"], ended_early=True)
    old["scores"]["coverage"].update(n_flagged=1, flagged=[0], flag_counts={"ended_early": 1, "short": 0, "empty": 0})
    new = refresh_coverage(old, sources)
    assert new["coverage"][0]["flags"] == record["coverage"][0]["flags"] and not new["coverage"][0]["ended_early"]
    assert new["flagged"] == record["flagged"] and new["scores"]["coverage"] == record["scores"]["coverage"]


def test_trace_frames_plot(records):
    _, _, recs = records
    record = recs[("alignatt", -1, 0.0)][0]
    emissions, tokens = trace_frames(record, record["traces"][0]["index"])
    assert list(tokens.columns) == ["time", "n_accessible", "position", "status", "order", "text"]
    assert not tokens.empty and tokens["position"].ge(0).all()
    fig = viz.alignatt_decisions(tokens, border=-1)
    ax = fig.axes[0]
    drawn = {c.get_gid() for c in ax.collections}
    assert {f"status:{s}" for s in tokens["status"].unique()} == drawn
    assert sum(len(c.get_offsets()) for c in ax.collections) == len(tokens)
    (border,) = [line for line in ax.lines if line.get_gid() == "border"]
    first = tokens.drop_duplicates("time")
    assert list(border.get_ydata()) == list(first["n_accessible"] - 1 - 0.5)
    if not emissions.empty:
        viz.policy_trace(emissions)
    with pytest.raises(Exception, match="not traced"):
        trace_frames(record, 99)
