"""Words that share tokens (issue 11, item 6): Italian and French elisions, glued punctuation, German compounds.

A SentencePiece-like tokenizer merges "dell'isola", "qu'il" or "(BMBF)." into one token, so a word can have
no token of its own; byte-level BPE splits a Chinese character across tokens, so a token can end in the
middle of the next word; a German compound spans several tokens. Every place that maps words to tokens —
the prompt's word <-> token maps, head scoring, the oracle, the translator's unit cut — must handle them.
"""

from __future__ import annotations

import numpy as np
import pytest

from alignheads.corpus.pairs import Corpus, SentencePair
from alignheads.heads.headset import Head
from alignheads.heads.readiness import prefix_steps
from alignheads.heads.scoring import ScoreConfig, reference_token_scores, score_heads
from alignheads.model.prompts import PromptLayout, render
from alignheads.model.tiny import tiny_tokenizer
from alignheads.simul.oracle import _emission_steps, policy_eval
from alignheads.simul.policy import AlignAttConfig
from alignheads.simul.translator import SimultaneousTranslator, SourceWord, TranslatorConfig
from tests.scripted import scripted_model, sentencepiece_tokenizer, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

# (language, source words, target words, sure links): each target side has words without a token of their own.
PAIRS = {
    "it": ("The largest lake of the island is the one of the plateau ( ESF ) .",
           "Il lago più grande dell' isola è quello dell' altopiano ( FSE ) .",
           [(0, 0), (2, 1), (1, 2), (1, 3), (3, 4), (4, 4), (5, 5), (6, 6), (7, 7), (8, 7), (9, 8), (10, 8),
            (11, 9), (12, 10), (13, 11), (14, 12), (15, 13)]),
    "fr": ("It is the man that he loves , today ( BMBF ) .",
           "C' est l' homme qu' il aime , aujourd'hui ( BMBF ) .",
           [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8), (9, 9), (10, 10), (11, 11),
            (12, 12)]),
    "de": ("The constitutional court of the federal government ( BVerfG ) decides .",
           "Das Verfassungsgerichtshof der Bundesregierung ( BVerfG ) entscheidet .",
           [(0, 0), (1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3), (7, 4), (8, 5), (9, 6), (10, 7), (11, 8)]),
}


def pair(lang: str) -> SentencePair:
    src, tgt, links = PAIRS[lang]
    return SentencePair(f"{lang}-1", tuple(src.split()), tuple(tgt.split()), frozenset(links), frozenset())


def corpus(lang: str) -> Corpus:
    return Corpus([pair(lang)], "en", lang, name=f"shared-tokens-{lang}")


@pytest.fixture(scope="module")
def sp_model():
    return tiny_model()


def shared(token_lists) -> set[int]:
    seen, out = set(), set()
    for toks in token_lists:
        out |= seen & set(toks)
        seen |= set(toks)
    return out


@pytest.mark.parametrize("lang", PAIRS)
def test_every_word_maps_to_the_tokens_it_shares(lang):
    tok = sentencepiece_tokenizer()
    p = pair(lang)
    r = render(PromptLayout("en", lang), tok, p.src_words, target_words=p.tgt_words)
    offsets = tok(r.text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert shared(r.tgt_tokens), "the tokenizer must merge some target words (else this test checks nothing)"
    assert shared(r.src_tokens)  # "(ESF)." / "(BMBF)." on the English side too
    for words, tokens in ((r.src_words, r.src_tokens), (r.tgt_words, r.tgt_tokens)):
        for w, toks in zip(words, tokens, strict=True):
            assert toks, f"{w!r} has no token"
            text = "".join(r.text[offsets[t][0]: offsets[t][1]] for t in toks)
            assert w in text.replace("▁", " "), f"{w!r} not inside its tokens {text!r}"
    inverse = r.token_source_word()
    assert any(len(ws) > 1 for ws in inverse.values())


def test_a_compound_spans_several_tokens_and_owns_them():
    tok = sentencepiece_tokenizer()
    p = pair("de")
    r = render(PromptLayout("en", "de"), tok, p.src_words, target_words=p.tgt_words)
    compound = r.tgt_tokens[1]  # Verfassungsgerichtshof: not in the tokenizer's training text as a whole
    assert len(compound) > 1 and not set(compound) & {t for i, ts in enumerate(r.tgt_tokens) if i != 1 for t in ts}


@pytest.mark.model
@pytest.mark.parametrize("lang", PAIRS)
def test_scoring_with_shared_tokens_equals_the_eager_reference(sp_model, lang):
    layout = PromptLayout("en", lang)
    scores = score_heads(sp_model, corpus(lang), layout, ScoreConfig(progress=False))
    ref = reference_token_scores(sp_model, layout, pair(lang))
    for qi, q in enumerate(("own", "emit")):
        for ci, col in enumerate(("ts", "source_acc", "gold_mass")):
            np.testing.assert_allclose(scores.matrix(col, q), ref[qi, ..., ci], atol=1e-5, err_msg=f"{q} {col}")
    words = scores.word_attention[0].words
    assert words.shape[-2:] == (len(pair(lang).tgt_words), len(pair(lang).src_words))
    assert scores.heads["aer"].between(0, 1).all()


@pytest.mark.model
@pytest.mark.parametrize("lang", PAIRS)
@pytest.mark.parametrize("show_future", [False, True])
def test_oracle_runs_on_words_without_a_token_of_their_own(sp_model, lang, show_future):
    heads = [Head(2, 1), Head(5, 0, "emit")]
    res = policy_eval(sp_model, corpus(lang), heads, show_future=show_future, progress=False)
    aligned = {t for _, t in pair(lang).possible}
    for variant in ("selected", "all_heads_mean", "diagonal"):
        assert res[variant]["n_words"] == len(aligned)
        assert 0.0 <= res[variant]["premature_rate"] <= 1.0


SCRIPTS = {
    "it": (sentencepiece_tokenizer, " Il lago dell'isola (FSE) è grande."),
    "fr": (sentencepiece_tokenizer, " C'est l'homme qu'il aime aujourd'hui."),
    "de": (sentencepiece_tokenizer, " Das Verfassungsgerichtshof der Bundesregierung entscheidet."),
    "zh": (tiny_tokenizer, "我们的模型。"),
}


@pytest.mark.model
@pytest.mark.parametrize("lang", SCRIPTS)
@pytest.mark.parametrize("policy", ["alignatt", "wait-k"])
def test_unit_cut_emits_only_whole_words(lang, policy):
    """Drafts of 2 tokens end inside words (a compound's first pieces, half a Chinese character): before the
    source is final only complete units go out, each one of the drafted words (a sentence end withheld)."""
    make_tok, script = SCRIPTS[lang]
    lm = scripted_model(script, "eos", make_tok())
    cfg = TranslatorConfig(alignatt=AlignAttConfig(border=1, max_draft=2), wait_k=1, final_max_tokens=24)
    tr = SimultaneousTranslator(lm, [Head(2, 1), Head(0, 3)], "en", lang, policy, cfg)
    src = "the large lake of the island in the north of the country has a name".split()
    words = [SourceWord(w, 0.4 * (i + 1)) for i, w in enumerate(src)]
    script_units = script.split() if lang != "zh" else [c for c in script if not c.isspace()]
    allowed = (set(script_units) | {script_units[-1].rstrip(".。")}) - {"", "。"}
    emitted = []
    for n in range(1, len(src)):
        u = tr.update(words[:n], 0.4 * n)
        assert "\ufffd" not in u.new_text
        emitted += u.emitted_units
    assert emitted and set(emitted) <= allowed, emitted
    if lang != "zh":  # (the scripted model restarts its script when a cut splits one of its multi-character tokens)
        assert emitted == [w.rstrip(".") for w in script_units[: len(emitted)]]


def test_oracle_emits_words_that_share_a_token_together():
    # "dell'" and "isola" share token 1; ")" and "." share token 4; positions: token i aligns to source word i
    word_tokens = [[0], [1], [1], [2, 3], [4], [4]]
    b0 = AlignAttConfig(border=0)
    assert _emission_steps([0, 1, 2, 3, 4], word_tokens, 5, 6, b0, True, [1, 2, 3, 4, 5]) == [1, 2, 2, 4, 5, 5]
    # a draft window of 2 tokens: the window restarts after the last emitted word's last token
    short = AlignAttConfig(border=5, max_draft=2)
    assert _emission_steps([0, 0, 0, 0, 0], word_tokens, 5, 6, short, True, [1, 2, 3]) == [1, 1, 1, 2, 3, 3]


def test_realistic_oracle_steps_show_each_word_before_it_is_accessible():
    assert prefix_steps(3) == [(1, 1), (2, 2)]
    assert prefix_steps(3, pending=1) == [(1, 0), (1, 1), (2, 1), (2, 2), (3, 2)]
    assert prefix_steps(3, show_future=True) == [(3, 1), (3, 2)]
