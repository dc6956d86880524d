"""Never end early (issue 11, item 1): a model that always drafts a short complete sentence, on long sources.

The model (`tests.scripted.scripted_model`) is a real tiny Gemma-3 with a fixed, biased output table: from
any context it drafts " Il modello." and then ends it (with end-of-turn, with a newline, or by running on
into a second sentence). Its attention weights are untouched, so capture, replay and every policy run
their real code paths. Before the source sentence is final, no policy may commit the draft's end: not the
stop token, not a sentence-final punctuation unit, nothing after it. The target sentence may end only once
every source word is accessible.
"""

from __future__ import annotations

import numpy as np
import pytest

from alignheads.base.sentences import sentence_end, unopened_closer
from alignheads.heads.headset import Head
from alignheads.model.loader import LoadedModel
from alignheads.simul.coverage import moves_toward, sentence_coverage
from alignheads.simul.policy import AlignAttConfig, DraftView, hold_sentence_end
from alignheads.simul.translator import POLICIES, SimultaneousTranslator, SourceWord, TranslatorConfig
from tests.scripted import policy_heads, scripted_model

# 22 words, as in the recording: the model's sentence is complete after the first one.
LONG = ("When the committee met again in the spring , it agreed that the new rules would apply to every "
        "member state .").split()
HEADS = [Head(2, 1), Head(5, 0, "emit"), Head(0, 3)]
ENDINGS = ("eos", "newline", "run_on")


@pytest.fixture(scope="module", params=ENDINGS)
def scripted(request) -> LoadedModel:
    return scripted_model(" Il modello.", request.param)


def config(policy: str) -> TranslatorConfig:
    # b = 1 without hold-back never stops a draft (no token can attend beyond the accessible words): the
    # failing setting of the issue. wait-2, cut-last-1 and LA-2 emit as soon as their rules allow.
    return TranslatorConfig(alignatt=AlignAttConfig(border=1, max_draft=8), wait_k=2, cut_last=1,
                            final_max_tokens=16)


SENTENCE_END = ".!?。！？"


@pytest.mark.model
@pytest.mark.parametrize("policy", POLICIES)
def test_the_target_sentence_ends_only_after_the_whole_source(scripted, policy):
    tr = SimultaneousTranslator(scripted, policy_heads(policy, HEADS, scripted), "en", "it", policy, config(policy))
    words = [SourceWord(w, 0.4 * (i + 1)) for i, w in enumerate(LONG)]
    updates = [tr.update(words[:n], 0.4 * n) for n in range(1, len(LONG))]
    assert any(u.decision_trace.draft_end in ("eos", "newline", "max_draft") for u in updates)
    for u in updates:
        assert not any(c in SENTENCE_END for c in u.new_text), (
            f"{policy} committed a sentence end with {u.n_accessible} of {len(LONG)} source words: {u.new_text!r}")
    committed = tr.target
    final = tr.update(words, 0.4 * len(LONG), final=True)
    assert tr.target.startswith(committed) and final.new_text  # the final pass continues the committed prefix
    if final.decision_trace.draft_end != "length_cap":  # (the run-on model never stops by itself)
        assert tr.target.endswith(".")
    cov = sentence_coverage(0, LONG, tr.history, tr.target, "it")
    assert cov.accessible_at_end == len(LONG) and not cov.ended_early


@pytest.mark.parametrize("text, at", [
    ("Il modello.", 10), ("Il modello. Il", 10), ('disse "basta."', 12), ("(FSE).", 5), ("aime ?", 5),
    ("Per oltre 20 anni... e", 17), ("我们的模型。我们", 5), ("BLEU 2.3 punti", None), ("gli U.S.A sono", None),
    ("e.g. this", None), ("Il modello", None),
    # a full stop the text shows to go on: a lower-case word, an abbreviation or a title and a word follows
    ("Wir sehen z. B. die Daten.", 25), ("Das hat Dr. Weber gesagt.", 24), ("Er kam. und", None),
    ("Er kam am 3. Mai.", 11), ("J. Smith kam.", 1), ("Il modello.  ", 10),
])
def test_sentence_end_finds_the_first_sentence_final_mark(text, at):
    assert sentence_end(text) == at


def test_hold_sentence_end_keeps_the_word_before_the_mark_and_the_tokens_that_reach_it():
    # tokens: "Il" " model" "lo." " Il"  -> the third token carries the mark
    view = DraftView("Il modello. Il", [0, 2, 8, 11, 14], False, True, 3, 0, np.zeros((1, 4, 3)))
    held = hold_sentence_end(view)
    assert held.text == "Il modello" and held.complete and held.held_end
    assert held.token_ends == [0, 2, 8, 10] and held.attention.shape == (1, 3, 3)
    assert hold_sentence_end(DraftView("Il modello", [0, 2, 10], False, True, 3, 0)).held_end is False


@pytest.mark.model
@pytest.mark.parametrize("ending", ["eos", "newline"])
def test_a_final_pass_does_not_stop_before_its_source_is_covered(ending):
    """XL-WA's three early ends: continuing from a committed prefix, the model stopped at once. The final pass now
    may not stop (stop token or newline) before the sentence has `final_min_ratio` target units per source word;
    the committed text is never touched. With the ratio 0 the old, short translation comes back."""
    from alignheads.base.languages import target_units

    lm = scripted_model(" Il modello.", ending)
    words = [SourceWord(w, 0.4 * (i + 1)) for i, w in enumerate(LONG)]
    lengths = {}
    for ratio in (0.0, 0.5):
        tr = SimultaneousTranslator(lm, HEADS, "en", "it", "wait-k",
                                    TranslatorConfig(wait_k=2, final_max_tokens=40, final_min_ratio=ratio))
        tr.resume("Quando")
        final = tr.update(words, 0.4 * len(LONG), final=True)
        assert tr.target.startswith("Quando ") and final.new_text
        lengths[ratio] = len(target_units(tr.target, "it"))
        if ratio:
            assert lengths[ratio] >= 11 or final.decision_trace.draft_end == "length_cap"
    assert lengths[0.0] == 3 and lengths[0.5] > lengths[0.0]


@pytest.mark.parametrize("text, before, at", [
    ("lingue ufficiali) e", "in poche ", 16), ("(EN, FR) e", "lingue ", None), (", FR) e", "lingue (EN", None),
    ("] e", "(x", 0), ("a) b", "", 1), ("」", "「", None), ("x)", "a) ", 1),
])
def test_unopened_closer_finds_a_closing_bracket_nothing_opened(text, before, at):
    assert unopened_closer(text, before) == at


@pytest.mark.model
@pytest.mark.parametrize("hold", [True, False])
def test_a_closing_bracket_nothing_opened_waits_for_the_final_pass(hold):
    """Issue 21 item 6 (XL-WA sentence 95): a draft that closes a bracket it never opened ("lingue)") reads as a
    finished sentence, and the final pass continuing from it stopped at once. Before the final pass such a bracket
    is held back like a sentence end (`hold_brackets`); the final pass may write it."""
    lm = scripted_model(" Il modello).", "eos")
    tr = SimultaneousTranslator(lm, HEADS, "en", "it", "wait-k",
                                TranslatorConfig(wait_k=2, final_max_tokens=16, final_min_ratio=0.0,
                                                 hold_brackets=hold))
    words = [SourceWord(w, 0.4 * (i + 1)) for i, w in enumerate(LONG)]
    committed = "".join(tr.update(words[:n], 0.4 * n).new_text for n in range(1, len(LONG)))
    assert committed == ("Il modello" if hold else "Il modello)")
    tr.update(words, 0.4 * len(LONG), final=True)
    assert tr.target == "Il modello)."


@pytest.mark.parametrize("target, continuation, kept", [
    # XL-WA 95 (learned border 0.5): the bracket was held, the final pass translated what was unheard
    ("Il sistema di interfaccia è in 24 EU ufficiali, ma la maggior parte delle informazioni è disponibile in un "
     "numero limitato di lingue ufficiali", " (inglese, francese e tedesco) .", True),
    # en-de 31 (learned border 0.3): a complete translation; the forced pass invents a source
    ("Das Vertrauen zwischen dem Anwärter und dem Anwärter war hoch, mit einem Annullationserfolg von nur 6%",
     " (Quelle: Google).", False),
    ("Das Vertrauen zwischen dem Anwärter und dem Anwärter war hoch, mit einem Annullationserfolg von nur 6%",
     ".", True),
    # en-it 29 (learned border 0.5): the model left the translation; "1." only ends it
    ("Poi due annotatori hanno girato ogni frase indipendentemente, seguendo l'Italian:", " 1.", False),
])
def test_a_forced_final_continuation_is_kept_only_if_it_translates_what_the_target_lacks(target, continuation,
                                                                                          kept):
    """Issue 21 item 6: the acceptance test of `finish_unheard` on the embedded model's real cases (the same
    model's translations of the whole sentences as the yardstick)."""
    offline = {"Il": "Il sistema di interfaccia è in 24 lingue ufficiali, ma le informazioni di metadata sono "
                     "attualmente disponibili in un numero limitato di lingue (inglese, francese e tedesco).",
               "Da": "Die Vereinbarung zwischen den annotatorn war hoch, mit einem Alignment-Error-Rate von nur 6%.",
               "Po": "Poi due annotatori hanno girato le parole indipendentemente, seguendo le linee guida di Och e "
                     "Ney."}[target[:2]]
    assert moves_toward(target, continuation, offline) is kept


@pytest.mark.model
@pytest.mark.parametrize("runner_up", [("lo", "."), None])
def test_a_forced_final_pass_that_translates_nothing_more_is_dropped(runner_up):
    """Issue 21 item 6: text committed while 3 of 22 words were heard ("Il modello") reads as complete and the final
    pass stops at once. `finish_unheard` drafts again without stop tokens — here the model's second choice only ends
    the sentence (".") or it repeats itself ("Il modello Il modello ...") — and drops it, since neither brings the
    output closer to the model's own translation of the whole sentence: nothing invented is appended, the early end
    stays flagged. The second draft and the whole-sentence draft did run."""
    lm = scripted_model(" Il modello", "eos", runner_up=runner_up)
    updates = {}
    for finish in (True, False):
        tr = SimultaneousTranslator(lm, HEADS, "en", "it", "wait-k",
                                    TranslatorConfig(wait_k=2, final_max_tokens=16, final_min_ratio=0.0,
                                                     finish_unheard=finish))
        words = [SourceWord(w, 0.4 * (i + 1)) for i, w in enumerate(LONG)]
        for n in range(1, len(LONG)):
            tr.update(words[:n], 0.4 * n)
        before = tr.stats["model_updates"]
        final = tr.update(words, 0.4 * len(LONG), final=True)
        updates[finish] = tr.stats["model_updates"] - before
        assert tr.target == "Il modello" and not final.new_text
        assert sentence_coverage(0, LONG, tr.history, tr.target, "it").ended_early
    assert updates == {True: 3, False: 1}


@pytest.mark.model
def test_a_forced_final_continuation_judged_closer_is_appended(monkeypatch):
    """Issue 21 item 6: when `moves_toward` judges the second draft closer to the whole-sentence translation, the final
    pass appends it (the committed text untouched). The scripted model drafts the same sentence from any context, so
    its own whole-sentence translation is never longer than what it committed: the judgement is forced here, and
    checked on the embedded model's real cases above."""
    import alignheads.simul.translator as translator

    seen = []
    monkeypatch.setattr(translator, "moves_toward", lambda *args: seen.append(args) or True)
    tr = SimultaneousTranslator(scripted_model(" Il modello", "eos", runner_up=("lo", ".")), HEADS, "en", "it",
                                "wait-k", TranslatorConfig(wait_k=2, final_max_tokens=16, final_min_ratio=0.0))
    words = [SourceWord(w, 0.4 * (i + 1)) for i, w in enumerate(LONG)]
    for n in range(1, len(LONG)):
        tr.update(words[:n], 0.4 * n)
    final = tr.update(words, 0.4 * len(LONG), final=True)
    assert seen == [("Il modello", ".", "Il modello")]
    assert final.new_text == "." and tr.target == "Il modello."


@pytest.mark.model
def test_every_memo_hit_of_a_final_pass_is_charged_to_its_update():
    """Guards the computation-aware clock: an update that finds its drafts in the memo is charged what they cost when
    they were computed — all of them, not only the draft it keeps (a final pass that drafts again runs three)."""
    from collections import OrderedDict

    lm = scripted_model(" Il modello", "eos", runner_up=("lo", "."))
    memo: OrderedDict = OrderedDict()
    words = [SourceWord(w, 0.4 * (i + 1)) for i, w in enumerate(LONG)]
    for _ in range(2):  # the second translator finds every draft in the memo the first one filled
        tr = SimultaneousTranslator(lm, HEADS, "en", "it", "wait-k",
                                    TranslatorConfig(wait_k=2, final_max_tokens=16, final_min_ratio=0.0,
                                                     memo_size=64), memo=memo)
        for n in range(1, len(LONG)):
            tr.update(words[:n], 0.4 * n)
        hits = tr.stats["memo_hits"]
        final = tr.update(words, 0.4 * len(LONG), final=True)
    assert tr.stats["memo_hits"] - hits == 3
    assert final.compute_s >= sum(d.compute_s for d in list(memo.values())[-3:])


@pytest.mark.model
@pytest.mark.parametrize("policy", ["wait-k", "alignatt"])
def test_a_draft_that_writes_the_prompt_label_ends_before_it(policy):
    """`stop_at_label`: a model that writes the prompt's target label ("Italian:", as the embedded model did on en-it
    sentence 29: "seguendo l'Italian:", then stopped) has left the translation. The draft ends before the label and
    nothing of it is committed, in the updates or the final pass; the draft's end says why."""
    lm = scripted_model("Il modello Italian: due", "eos")
    for on in (True, False):
        tr = SimultaneousTranslator(lm, policy_heads(policy, HEADS, lm), "en", "it", policy,
                                    TranslatorConfig(alignatt=AlignAttConfig(border=1, max_draft=8), wait_k=2,
                                                     final_max_tokens=16, stop_at_label=on))
        words = [SourceWord(w, 0.4 * (i + 1)) for i, w in enumerate(LONG)]
        updates = [tr.update(words[:n], 0.4 * n) for n in range(1, len(LONG))]
        updates.append(tr.update(words, 0.4 * len(LONG), final=True))
        ends = {u.decision_trace.draft_end for u in updates}
        if on:
            assert "Italian" not in tr.target and "label" in ends, (tr.target, ends)
            assert tr.target.startswith("Il modello")
        else:
            assert "Italian:" in tr.target and "label" not in ends
