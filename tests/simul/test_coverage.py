"""Per-sentence coverage: ended-early and short flags, chrF against the offline translation, coverage.json."""

from __future__ import annotations

import json

import pytest

from alignheads.simul.coverage import ENDED_EARLY, SHORT, coverage_summary, format_flagged, sentence_coverage
from alignheads.simul.translator import DecisionTrace, Update

W = ["w"]  # a source word


def step(units: list[str], n_acc: int, n_src: int, final: bool = False) -> Update:
    trace = DecisionTrace("alignatt", n_src, n_acc, "final" if final else "end_of_draft")
    return Update(" ".join(units), units, trace, 0.0, n_src, n_acc, final, 0.0)


def test_a_translation_that_ends_before_its_source_is_flagged():
    # The failure: a complete sentence after 5 of 22 words, then nothing more.
    ups = [step("Il gatto dorme sul divano .".split(), 5, 7)] + [step([], n, n + 2) for n in range(6, 22)]
    ups.append(step([], 22, 22, final=True))
    cov = sentence_coverage(0, W * 22, ups, "Il gatto dorme sul divano.", "it")
    assert cov.accessible_at_end == 5 and cov.ended_early
    assert cov.target_units == 5 and cov.length_ratio == pytest.approx(5 / 22)
    assert cov.flags == [ENDED_EARLY, SHORT]


def test_output_completed_by_the_final_pass_is_not_flagged():
    ups = [step(["Il", "gatto"], 3, 4), step(["dorme", "sul", "divano."], 5, 5, final=True)]
    cov = sentence_coverage(1, W * 5, ups, "Il gatto dorme sul divano.", "it", offline="Il gatto dorme sul divano.")
    assert cov.accessible_at_end == 5 and not cov.ended_early and not cov.flagged
    assert cov.chrf_offline == pytest.approx(100.0) and cov.offline_units == 5


def test_the_sentence_ends_when_text_was_last_added_even_without_a_new_unit():
    end = step([], 3, 3, final=True)
    end.new_text = "."  # glued to the last word: no new unit, but the sentence ends here
    cov = sentence_coverage(0, W * 3, [step(["Il", "gatto", "dorme"], 2, 3), end], "Il gatto dorme.", "it")
    assert cov.accessible_at_end == 3 and not cov.ended_early


def test_units_are_characters_for_chinese_and_empty_output_is_flagged():
    cov = sentence_coverage(0, W * 4, [step(list("我们的模型"), 4, 4, final=True)], "我们的模型", "zh",
                            offline="我们的模型很好")
    assert cov.target_units == 5 and cov.length_ratio == pytest.approx(1.25)
    assert 0 < cov.chrf_offline < 100 and not cov.flagged
    empty = sentence_coverage(1, W * 4, [step([], 4, 4, final=True)], "", "zh")
    assert empty.accessible_at_end is None and empty.flags == ["empty"]


def test_coverage_summary_counts_flags():
    good = sentence_coverage(0, W * 2, [step(["Ciao", "mondo."], 2, 2, final=True)], "Ciao mondo.", "it")
    bad = sentence_coverage(1, W * 6, [step(["Ciao."], 1, 6), step([], 6, 6, final=True)], "Ciao.", "it")
    summary = coverage_summary([good, bad])
    on_disk = json.loads(json.dumps(summary))
    assert summary["n_flagged"] == 1 and summary["flagged"] == [1]
    assert summary["flag_counts"] == {"ended_early": 1, "short": 1, "empty": 0}
    assert on_disk["sentences"][1]["accessible_at_end"] == 1
    assert format_flagged(summary) == "coverage: 1 of 2 sentences flagged (ended_early 1, short 1)"


def test_a_final_punctuation_token_need_not_be_heard_and_is_not_a_word():
    # a tokenized corpus: "... was only 6 % ." -- the translation may end once "6" is accessible
    src = "the rate was only 6 % .".split()
    done = [step("die Rate war nur 6%".split(), 5, 7), step([], 7, 7, final=True)]
    cov = sentence_coverage(0, src, done, "die Rate war nur 6%", "de")
    assert cov.source_words == 5 and cov.last_word == 5 and not cov.ended_early
    assert cov.length_ratio == pytest.approx(5 / 5)
    early = sentence_coverage(0, src, [step("die Rate war nur".split(), 4, 7), step([], 7, 7, final=True)],
                              "die Rate war nur", "de")
    assert early.ended_early  # "6" was not yet accessible
