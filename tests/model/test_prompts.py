"""Prompt layouts: run-time text and exact word <-> token maps."""

from __future__ import annotations

import pytest

from alignheads.base.errors import AlignheadsError
from alignheads.corpus.formats import read_corpus
from alignheads.model.prompts import PromptLayout, render

SRC = "In 2023 , our model's BLEU improved by 2.3 points on MuST-C ( en-de ) .".split()
IT = "Nel 2023 , il BLEU del nostro modello è migliorato di 2,3 punti su MuST-C ( en-de ) .".split()
ZH = "我们 的 模型 在 MuST-C 上 提高 了 2.3 分 。".split()


def _check_maps(tok, r, src_lang, tgt_lang):
    """Every word's tokens decode to text containing the word (modulo spacing and byte splits)."""
    for words, maps in ((r.src_words, r.src_tokens), (r.tgt_words, r.tgt_tokens)):
        assert len(words) == len(maps)
        for w, toks in zip(words, maps, strict=False):
            assert toks == sorted(toks) and toks == list(range(toks[0], toks[-1] + 1))
            text = tok.decode([r.input_ids[t] for t in toks]).strip()
            assert w in text, (w, text)


@pytest.mark.parametrize("model", ["tiny3", "embedded"])
@pytest.mark.parametrize("tgt,words", [("it", IT), ("zh", ZH)])
def test_word_maps_decode_to_their_words(model, tgt, words, request):
    lm = request.getfixturevalue(model)
    layout = PromptLayout.for_tokenizer(lm.tokenizer, "en", tgt)
    r = render(layout, lm.tokenizer, SRC, target_words=words)
    _check_maps(lm.tokenizer, r, "en", tgt)
    assert r.src_token_span[0] <= r.src_tokens[0][0] and r.src_tokens[-1][-1] < r.src_token_span[1]
    assert r.src_token_span[1] <= r.target_start <= r.tgt_tokens[0][0]
    assert r.input_ids == lm.tokenizer(r.text, add_special_tokens=False)["input_ids"]


def test_chat_layout_is_the_papers(tiny3):
    layout = PromptLayout("en", "de")
    r = render(layout, tiny3.tokenizer, ["Hello", "world", "."])
    assert "[Current English ASR prefix]\nHello world." in r.text
    assert r.text.endswith("<start_of_turn>model\n")  # assistant turn open, nothing emitted yet
    assert r.prefix_end == len(r) == r.target_start


def test_prefix_is_continued_not_closed(tiny3):
    layout = PromptLayout("en", "de")
    r = render(layout, tiny3.tokenizer, ["Hello", "world"], prefix="Hallo")
    assert r.text.endswith("<start_of_turn>model\nHallo")
    assert r.tgt_words == ("Hallo",) and r.prefix_end == len(r)
    tf = render(layout, tiny3.tokenizer, ["Hello", "world"], prefix="Hallo", target_words=["Welt", "."])
    assert tf.text.endswith("model\nHallo Welt.")
    assert tf.tgt_words == ("Hallo", "Welt", ".") and tf.prefix_end == tf.tgt_tokens[1][0]


def test_chinese_prefix_counts_characters(tiny3):
    r = render(PromptLayout("en", "zh"), tiny3.tokenizer, ["Hello"], prefix="我们的")
    assert r.tgt_words == ("我", "们", "的")


def test_completion_layout_for_base_models(embedded):
    layout = PromptLayout.for_tokenizer(embedded.tokenizer, "en", "de")
    assert layout.family == "completion"
    r = render(layout, embedded.tokenizer, ["Good", "morning", "."], prefix="Guten")
    assert r.text.endswith("English: Good morning.\nGerman: Guten")


def test_layout_identity_is_stable_and_sensitive():
    a, b = PromptLayout("en", "de"), PromptLayout("en", "de")
    assert a.id == b.id and a.hash == b.hash
    assert PromptLayout("en", "it").id != a.id
    assert PromptLayout("en", "de", system="Translate.").id != a.id
    assert PromptLayout.from_dict(a.to_dict()) == a
    assert PromptLayout("EN", "zh-CN").tgt_lang == "zh"
    with pytest.raises(AlignheadsError, match="family"):
        PromptLayout("en", "de", family="dialog")


def test_completion_layout_without_built_in_shots_is_zero_shot(tiny3):
    assert PromptLayout("de", "en", family="completion").examples == ()
    r = render(PromptLayout("en", "ro", family="completion"), tiny3.tokenizer, ["Good", "day", "."],
               target_words=["Bună", "ziua"])
    assert r.text.endswith("English: Good day.\nRomanian: Bună ziua") and "German" not in r.text
    _check_maps(tiny3.tokenizer, r, "en", "ro")


def test_shared_corpora_render(shared_gold, tiny4):
    corpus = read_corpus(shared_gold / "zh-en.tsinghua-dev.src-tgt").swap()
    layout = PromptLayout("en", "zh")
    for pair in corpus.head(20):
        _check_maps(tiny4.tokenizer, render(layout, tiny4.tokenizer, pair.src_words, target_words=pair.tgt_words),
                    "en", "zh")


def test_rendering_is_linear_in_the_source_length():
    """Reported: mapping words to tokens compared every word with every token, so one 2,000-word frame froze the
    server for a minute. Ten times the words must cost well under a hundred times the time (ratio < 20)."""
    import time

    from alignheads.model.prompts import PromptLayout, render
    from alignheads.model.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    layout = PromptLayout.for_tokenizer(tok, "en", "de")
    words = "the quick brown fox jumps over the lazy dog .".split()

    def seconds(n: int) -> float:
        src = (words * (n // len(words) + 1))[:n]
        best = float("inf")
        for _ in range(5):  # the best of five: a busy machine's noise only ever adds time
            t0 = time.perf_counter()
            render(layout, tok, src, prefix=" ".join(src[:50]))
            best = min(best, time.perf_counter() - t0)
        return best

    seconds(200)  # warm-up
    assert seconds(20_000) / seconds(2_000) < 20
