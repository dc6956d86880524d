"""Splicing a cached setting record (`alignheads.simul.splice`): re-simulating only the sentences a change can alter
gives the record a full re-run would give, and refuses a record the old settings do not reproduce."""

from __future__ import annotations

from dataclasses import replace

import pytest

from alignheads.corpus.pairs import Corpus, SentencePair
from alignheads.simul.splice import SpliceError, splice_setting
from alignheads.simul.sweep import run_setting
from alignheads.simul.translator import TranslatorConfig
from tests.scripted import scripted_model
from tests.simul.test_never_early import HEADS, LONG

BEFORE = {"hold_brackets": False, "finish_unheard": False}
SHORT = "It rains".split()


@pytest.fixture(scope="module")
def setup():
    lm = scripted_model("Il modello) e.", "eos")
    pairs = [SentencePair(str(k), words, ("Il", "modello", "."), set(), set())
             for k, words in enumerate([LONG, SHORT, LONG[:12]])]
    corpus = Corpus(pairs, "en", "it", "scripted")
    base = TranslatorConfig(final_max_tokens=16, final_min_ratio=0.0)
    old, _ = run_setting(lm, corpus, HEADS, "wait-k", 2, 0.25, dataset="t", base=replace(base, **BEFORE))
    new, _ = run_setting(lm, corpus, HEADS, "wait-k", 2, 0.25, dataset="t", base=base)
    return lm, corpus, base, old, new


@pytest.mark.model
@pytest.mark.parametrize("per_sentence", [True, False])
def test_a_spliced_record_equals_a_full_rerun(setup, per_sentence):
    """Guards the splice arithmetic: sentences 0 and 2 (long enough to commit ")" before the final pass) re-simulated
    and spliced give the full re-run's outputs, BLEU, chrF, latencies (CU), decision shares, coverage and key;
    sentence 1 (two words: nothing is committed before the final pass) is left as it was. A record without
    per-sentence latencies (made before they were kept) gets AL and LAAL moved by the difference, and no YAAL: its
    mean leaves out sentence 1 (nothing emitted before its source ended), which such a record cannot show."""
    lm, corpus, base, old, new = setup
    assert old["scores"]["laal_cu"] != new["scores"]["laal_cu"]  # " e" waits for the final pass behind ")"
    record = old if per_sentence else {k: v for k, v in old.items() if k != "sentence_latency"}
    got = splice_setting(lm, corpus, HEADS, record, [0, 2], BEFORE, base=base)
    assert got["key"] == new["key"] and got["predictions"] == new["predictions"]
    assert got["coverage"] == new["coverage"] and got["flagged"] == new["flagged"]
    s, want = got["scores"], new["scores"]
    for m in ("bleu", "chrf", "al_cu", "laal_cu") + (("yaal_cu",) if per_sentence else ()):
        assert s[m] == pytest.approx(want[m], rel=1e-9), m
    if not per_sentence:
        assert s["yaal_cu"] is None and "yaal_cu" in got["spliced"]["not_recomputed"]
    assert s["decisions"] == pytest.approx(want["decisions"])
    assert s["coverage"] == want["coverage"]
    assert s["stats"]["draft_tokens"] == want["stats"]["draft_tokens"]
    assert got["spliced"]["sentences"] == [0, 2]
    assert [t["prediction"] for t in got["traces"]] == [t["prediction"] for t in new["traces"]]


@pytest.mark.model
def test_a_record_the_old_settings_do_not_reproduce_is_refused(setup):
    """Guards the splice's checks: a record whose output the `before` settings do not give back cannot be spliced,
    nor a sentence the record does not hold."""
    lm, corpus, base, old, _ = setup
    for outside in ([-1], [0, 3]):
        with pytest.raises(SpliceError, match="not all in the record"):
            splice_setting(lm, corpus, HEADS, old, outside, BEFORE, base=base)
    tampered = {**old, "predictions": ["Altro."] + old["predictions"][1:]}
    with pytest.raises(SpliceError, match="sentence 0"):
        splice_setting(lm, corpus, HEADS, tampered, [0], BEFORE, base=base)
