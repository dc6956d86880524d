"""Tests for alignheads.corpus.formats: corpus model, readers/writers, surfaces, validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignheads.base.errors import AlignheadsError, DataFormatError
from alignheads.base.text import Surface, surface
from alignheads.corpus.formats import detect_format, read_corpus, validate_path, write_corpus, write_pharaoh
from alignheads.corpus.pairs import Corpus, SentencePair
from alignheads.corpus.validation import ValidationReport, format_report, validate_corpus

HEADER = '# alignheads-corpus v1 {"src": "en", "tgt": "de"}\n'


def pair(pid="1", src="the cat", tgt="die Katze", sure=((0, 0), (1, 1)), possible=(), su=(), tu=()) -> SentencePair:
    return SentencePair(pid, tuple(src.split()), tuple(tgt.split()), frozenset(sure), frozenset(possible),
                        frozenset(su), frozenset(tu))


def toy(n: int = 6) -> Corpus:
    return Corpus([pair(str(i)) for i in range(n)], "en", "de", name="toy")


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def raises_at(path: Path, line: int | None, pattern: str, **kw) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        read_corpus(path, **kw)
    err = info.value
    assert err.line == line, str(err)
    assert re.search(pattern, err.problem), err.problem
    return err


# ---------------------------------------------------------------- model


def test_possible_is_normalised_to_superset_of_sure():
    p = pair(sure=[(0, 0)], possible=[(1, 1)])
    assert p.possible == {(0, 0), (1, 1)}
    assert isinstance(p.src_words, tuple) and isinstance(p.sure, frozenset)


def test_swapped_flips_sides_links_and_unaligned():
    p = pair(src="a b c", tgt="x y", sure=[(0, 1)], possible=[(2, 0)], su=[1])
    s = p.swapped()
    assert s.src_words == ("x", "y") and s.tgt_words == ("a", "b", "c")
    assert s.sure == {(1, 0)} and s.possible == {(1, 0), (0, 2)}
    assert s.tgt_unaligned == {1} and s.src_unaligned == frozenset()
    assert s.swapped() == p


def test_corpus_canonicalises_languages_and_rejects_unknown():
    c = Corpus([pair()], "zh-CN", "English")
    assert (c.src_lang, c.tgt_lang) == ("zh", "en")
    with pytest.raises(AlignheadsError, match="unknown language"):
        Corpus([pair()], "xx", "en")


def test_corpus_sequence_protocol_and_head():
    c = toy(5)
    assert len(c) == 5 and c[2].id == "2" and [p.id for p in c] == ["0", "1", "2", "3", "4"]
    h = c.head(2)
    assert [p.id for p in h] == ["0", "1"] and h.src_lang == "en" and len(c) == 5
    assert len(c.head(99)) == 5


def test_swap_is_one_call_and_an_involution():
    c = toy(3)
    s = c.swap()
    assert (s.src_lang, s.tgt_lang) == ("de", "en") and s[0].src_words == ("die", "Katze")
    assert s.meta["swapped"] is True
    assert s.swap() == c


def test_content_hash_covers_content_not_provenance():
    c = toy(3)
    same = Corpus(list(c.pairs), "en", "de", name="other", sources=("/x",), meta={"k": 1})
    assert c.content_hash() == same.content_hash()
    assert re.fullmatch(r"[0-9a-f]{64}", c.content_hash())
    changed = Corpus([pair("0", sure=[(0, 0)])] + c.pairs[1:], "en", "de")
    assert changed.content_hash() != c.content_hash()
    possible_only = Corpus([pair("0", sure=[(0, 0)], possible=[(1, 1)])] + c.pairs[1:], "en", "de")
    assert possible_only.content_hash() not in (c.content_hash(), changed.content_hash())
    assert c.swap().content_hash() != c.content_hash()


def test_split_is_seeded_disjoint_and_complete():
    c = toy(10)
    a, b = c.split(0.5, seed=3)
    ids_a, ids_b = [p.id for p in a], [p.id for p in b]
    assert len(a) == len(b) == 5 and not set(ids_a) & set(ids_b)
    assert sorted(ids_a + ids_b, key=int) == [p.id for p in c]
    assert ids_a == sorted(ids_a, key=int)  # original order kept inside a part
    assert [p.id for p in c.split(0.5, seed=3)[0]] == ids_a
    assert any([p.id for p in c.split(0.5, seed=s)[0]] != ids_a for s in range(4, 10))
    assert len(c.split(0.3)[0]) == 3
    assert a.meta["split"] == {"seed": 3, "fraction": 0.5, "part": 1} and b.meta["split"]["part"] == 2


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, 0.01])
def test_split_rejects_fractions_that_leave_a_part_empty(fraction):
    with pytest.raises(AlignheadsError, match="fraction"):
        toy(10).split(fraction)


# ---------------------------------------------------------------- surfaces


@pytest.mark.parametrize("words, lang, text", [
    ("With a surface of 84 km² it is the largest lake in Iceland .", "en",
     "With a surface of 84 km² it is the largest lake in Iceland."),
    ("Hello , world ! ( really ) [ yes ] 50 % ; ok : fine ?", "en", "Hello, world! (really) [yes] 50%; ok: fine?"),
    ("the eu 's pledge , they are n't and I 'm sure", "en", "the eu's pledge, they aren't and I'm sure"),
    ("korean companies ' participation", "en", "korean companies' participation"),
    ("he said \" go away \" and \" stop \" .", "en", 'he said "go away" and "stop".'),
    ("« oui » and “ quoted ” text …", "fr", "«oui» and “quoted” text…"),
    ("origine naturale dell' isola . L' anno e un' altra", "it", "origine naturale dell'isola. L'anno e un'altra"),
    ("un po' di pane", "it", "un po' di pane"),
    ("the Records' album", "en", "the Records' album"),
    ("科学家 一直 猜想 土卫六 上 存在 着 。", "zh", "科学家一直猜想土卫六上存在着。"),
    ("新华社 5月 22日 电 ( 记者 任 峰 )", "zh", "新华社5月22日电(记者任峰)"),
    ("我 在 New York 工作", "zh", "我在New York工作"),
    ("東京 に 行き ます 。", "ja", "東京に行きます。"),
    ("„ Hallo “ , sagte er „ ja “", "de", "„Hallo“, sagte er „ja“"),
    ("a “ quoted ” b", "de", "a “quoted” b"),
])
def test_surface_examples(words, lang, text):
    s = surface(words.split(), lang)
    assert s.text == text
    assert all(s.text[a:b] == w for w, (a, b) in zip(words.split(), s.spans, strict=True))


def test_surface_of_nothing_and_unknown_language():
    assert surface([], "en") == Surface("", ())
    with pytest.raises(AlignheadsError):
        surface(["a"], "xx")  # not a language code (any real one is accepted, Klingon too)


_word_chars = st.characters(blacklist_categories=("Cs",))
_punct = st.sampled_from(list('.,;:!?%)]}»”…([{«“„¿¡"\'’') + ["'s", "n't", "dell'", "po'", "..."])
_surface_words = st.lists(st.one_of(st.text(_word_chars, min_size=1, max_size=6), _punct, st.just("")), max_size=30)


@given(words=_surface_words, lang=st.sampled_from(["en", "it", "fr", "de", "zh", "ja"]))
def test_surface_spans_are_exact(words, lang):
    s = surface(words, lang)
    assert len(s.spans) == len(words)
    assert all(s.text[a:b] == w for w, (a, b) in zip(words, s.spans, strict=True))
    ends = [0] + [b for _, b in s.spans]
    # in order, never overlapping, separated by at most one space
    assert all(a >= prev_end for (a, _), prev_end in zip(s.spans, ends[:-1], strict=True))
    gaps = [s.text[e:a] for e, (a, _) in zip(ends[:-1], s.spans, strict=True)]
    assert all(g in ("", " ") for g in gaps) and s.text[ends[-1]:] == ""


# ---------------------------------------------------------------- alignheads format


def test_write_read_round_trip_with_everything(tmp_path):
    c = Corpus([pair("a", src="the cat sat", tgt="die Katze saß", sure=[(0, 0)], possible=[(1, 1)], su=[2], tu=[2]),
                pair("ü-2", src="北京 欢迎 你", tgt="welcome to Beijing", sure=[(0, 2), (1, 0)], tu=[1])],
               "zh", "en", name="mixed", meta={"license": "CC0", "silver": {"aligner": "simalign"}})
    path = tmp_path / "out.tsv"
    write_corpus(c, path)
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# alignheads-corpus v1 {")
    assert "a\tthe cat sat\tdie Katze saß\t0-0 1p1\ts2 t2\n" in text
    back = read_corpus(path)
    assert back.pairs == c.pairs and back.meta == c.meta and back.name == "mixed"
    assert (back.src_lang, back.tgt_lang) == ("zh", "en") and back.sources == (str(path),)
    assert back.content_hash() == c.content_hash()
    assert not list(tmp_path.glob(".*.tmp"))


_ids = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n\r"), min_size=1, max_size=5)
_file_word = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters=" \t\n\r"),
                     min_size=1, max_size=5)


@st.composite
def corpora(draw):
    ids = draw(st.lists(_ids.filter(lambda s: not s.startswith("#")), unique=True, max_size=6))
    pairs = []
    for pid in ids:
        src = draw(st.lists(_file_word, min_size=1, max_size=6))
        tgt = draw(st.lists(_file_word, min_size=1, max_size=6))
        cells = st.tuples(st.integers(0, len(src) - 1), st.integers(0, len(tgt) - 1))
        sure = draw(st.frozensets(cells, max_size=6))
        possible = draw(st.frozensets(cells, max_size=6))
        linked_s = {i for i, _ in sure | possible}
        linked_t = {j for _, j in sure | possible}
        su = draw(st.frozensets(st.sampled_from([i for i in range(len(src)) if i not in linked_s] or [-1])))
        tu = draw(st.frozensets(st.sampled_from([j for j in range(len(tgt)) if j not in linked_t] or [-1])))
        pairs.append(SentencePair(pid, tuple(src), tuple(tgt), sure, possible, su - {-1}, tu - {-1}))
    langs = draw(st.sampled_from([("en", "de"), ("zh", "en"), ("it", "ja")]))
    meta = draw(st.dictionaries(st.text(max_size=4), st.one_of(st.integers(), st.text(max_size=4)), max_size=2))
    return Corpus(pairs, *langs, name=draw(st.text(max_size=8)), meta=meta)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corpus=corpora())
def test_write_then_read_gives_the_corpus_back(tmp_path, corpus):
    path = tmp_path / "prop.tsv"
    write_corpus(corpus, path)
    back = read_corpus(path)
    assert back.pairs == corpus.pairs
    assert (back.src_lang, back.tgt_lang, back.name, back.meta) == (corpus.src_lang, corpus.tgt_lang,
                                                                    corpus.name, corpus.meta)
    assert back.content_hash() == corpus.content_hash()


def test_comment_lines_are_skipped(tmp_path):
    path = write(tmp_path, "c.tsv", HEADER + "# a note\n1\ta b\tx y\t0-0 1-1\t\n")
    assert [p.id for p in read_corpus(path)] == ["1"]


def test_empty_corpus_with_header_round_trips(tmp_path):
    c = Corpus([], "en", "it", name="none")
    write_corpus(c, tmp_path / "e.tsv")
    assert len(read_corpus(tmp_path / "e.tsv")) == 0


@pytest.mark.parametrize("body, line, pattern", [
    ("1\ta b\tx y\t0-0\n", 2, r"expected 5 tab-separated fields.*found 4"),
    ("1\ta b\tx y\t0-0\t\textra\n", 2, r"found 6"),
    ("1\ta b\tx y\t0-0 1_1\t\n", 2, r"malformed link '1_1'"),
    ("1\ta b\tx y\t0-0 a-b\t\n", 2, r"malformed link"),
    ("1\ta b\tx y\t2-0\t\n", 2, r"source index 2 out of range \(source has 2 words"),
    ("1\ta b\tx y\t0-0\t\n2\ta b c\tx\t0-1\t\n", 3, r"target index 1 out of range \(target has 1 words"),
    ("1\t\tx y\t\t\n", 2, r"empty pair: no source words"),
    ("1\ta b\t\t\t\n", 2, r"empty pair: no target words"),
    ("1\ta  b\tx\t\t\n", 2, r"empty source word"),
    ("1\ta b\tx y\t0-0\t\n1\tc\tz\t0-0\t\n", 3, r"duplicate id '1' \(first on line 2\)"),
    ("\ta b\tx y\t0-0\t\n", 2, r"empty id"),
    ("1\ta b\tx y\t0-0 0p0\t\n", 2, r"listed both as sure .* and possible"),
    ("1\ta b\tx y\t0-0 0-0\t\n", 2, r"listed twice"),
    ("1\ta b\tx y\t0-0\tq1\n", 2, r"malformed unaligned mark 'q1'"),
    ("1\ta b\tx y\t0-0\ts5\n", 2, r"source index out of range \(source has 2 words"),
    ("1\ta b\tx y\t0-0\tt0\n", 2, r"target word 0 is marked unaligned \(t0\) but has a link"),
    ("1\ta b\tx y\t0-0\ts1 s1\n", 2, r"listed twice"),
    ("\n", 2, r"expected 5 tab-separated fields"),
])
def test_alignheads_format_errors(tmp_path, body, line, pattern):
    raises_at(write(tmp_path, "bad.tsv", HEADER + body), line, pattern)


@pytest.mark.parametrize("header, pattern", [
    ('# alignheads-corpus v1 {"src": "en"\n', r"bad header JSON"),
    ('# alignheads-corpus v1 {"src": "en"}\n', r'bad header JSON: expected a JSON object with "src" and "tgt"'),
    ('# alignheads-corpus v1 ["en", "de"]\n', r"bad header JSON"),
    ('# alignheads-corpus v1 {"src": "en", "tgt": "xx"}\n', r"bad header JSON: unknown language 'xx'"),
    ('# alignheads-corpus v1 {"src": "en", "tgt": "de", "meta": 3}\n', r'"meta" must be a JSON object'),
    ('# alignheads-corpus v1 {"src": "en", "tgt": "de", "name": 3}\n', r'"name" a string'),
    ('# alignheads-corpus v2 {"src": "en", "tgt": "de"}\n', r"unsupported header"),
])
def test_alignheads_header_errors(tmp_path, header, pattern):
    raises_at(write(tmp_path, "h.tsv", header + "1\ta\tx\t0-0\t\n"), 1, pattern)


def test_missing_header_is_an_error_when_format_is_given(tmp_path):
    path = write(tmp_path, "h.tsv", "1\ta\tx\t0-0\t\n")
    raises_at(path, 1, r"missing header", format="alignheads")


def test_header_languages_conflicting_with_arguments(tmp_path):
    path = write(tmp_path, "h.tsv", HEADER + "1\ta\tx\t0-0\t\n")
    raises_at(path, 1, r"language 'it' was asked for but the file says 'de'", tgt_lang="it")
    assert read_corpus(path, src_lang="English").src_lang == "en"


def test_undecodable_bytes_name_their_line(tmp_path):
    path = write(tmp_path, "u.tsv", HEADER.encode() + b"1\ta\tx\t0-0\t\n2\tb\xff\ty\t0-0\t\n")
    raises_at(path, 3, r"not valid UTF-8 \(byte 0xff\)")


def test_bom_and_crlf_are_tolerated(tmp_path):
    path = write(tmp_path, "en-de.x.tsv", b"\xef\xbb\xbfa b\tx y\t0-0 1-1\r\n")
    c = read_corpus(path)
    assert c[0].tgt_words == ("x", "y") and c[0].sure == {(0, 0), (1, 1)}


@pytest.mark.parametrize("bad, pattern", [
    (pair(src="a b"), None),
    (SentencePair("1", ("a b",), ("x",), frozenset(), frozenset()), r"contains a space"),
    (SentencePair("#1", ("a",), ("x",), frozenset(), frozenset()), r"starts with '#'"),
    (SentencePair("1\t2", ("a",), ("x",), frozenset(), frozenset()), r"tab/newline"),
    (SentencePair("1", ("a",), ("x",), frozenset({(0, 3)}), frozenset()),
     r"invalid corpus: pair 1: link 0-3 out of range"),
])
def test_write_refuses_what_it_could_not_read_back(tmp_path, bad, pattern):
    path = tmp_path / "w.tsv"
    if pattern is None:
        write_corpus(Corpus([bad], "en", "de"), path)
        assert read_corpus(path).pairs == [bad]
        return
    with pytest.raises(DataFormatError, match=pattern):
        write_corpus(Corpus([bad], "en", "de"), path)
    assert not path.exists() and not list(tmp_path.iterdir())


# ---------------------------------------------------------------- xlwa


def test_xlwa_reads_sure_links_and_names_languages_from_file(tmp_path):
    path = write(tmp_path, "en-it.mini.tsv", "The cat .\tIl gatto .\t0-0 1-1 2-2\nHi\tCiao\t\n")
    c = read_corpus(path)
    assert (c.src_lang, c.tgt_lang, c.name, len(c)) == ("en", "it", "en-it.mini", 2)
    assert c[0].sure == c[0].possible == {(0, 0), (1, 1), (2, 2)} and c[1].sure == frozenset()
    assert [p.id for p in c] == ["1", "2"]


def test_xlwa_languages_from_arguments_or_a_clear_error(tmp_path):
    path = write(tmp_path, "mini.tsv", "a\tb\t0-0\n")
    assert read_corpus(path, src_lang="de", tgt_lang="en").src_lang == "de"
    raises_at(path, None, r"cannot tell the languages.*--src/--tgt")
    raises_at(write(tmp_path, "en-xx.tsv", "a\tb\t0-0\n"), None, r"cannot tell the languages")


@pytest.mark.parametrize("body, line, pattern", [
    ("a b\tx y\n", 1, r"expected 3 tab-separated fields"),
    ("a b\tx y\t0-0\n\n", 2, r"expected 3 tab-separated fields.*found 1"),
    ("a b\tx y\t0-0\n \tx\t\n", 2, r"empty pair: no source words"),
    ("a b\tx y\t0-0\nc\t \t\n", 2, r"empty pair: no target words"),
    ("a b\tx y\t0-2\n", 1, r"target index 2 out of range \(target has 2 words; indices are 0-based"),
    ("a b\tx y\t0-0 1:1\n", 1, r"malformed link '1:1'"),
    ("", None, r"file is empty"),
])
def test_xlwa_errors(tmp_path, body, line, pattern):
    raises_at(write(tmp_path, "en-it.bad.tsv", body), line, pattern)


# ---------------------------------------------------------------- talp


def test_talp_reads_one_indexed_sure_and_possible_with_sibling_gold(tmp_path):
    src = write(tmp_path, "zh-en.mini.src-tgt", "北京 欢迎 你 ||| welcome to beijing\n你好 ||| hello\n")
    write(tmp_path, "zh-en.mini.gold", "1-3 2-1 2p2\n1-1\n")
    c = read_corpus(src)
    assert (c.src_lang, c.tgt_lang, len(c)) == ("zh", "en", 2)
    assert c[0].sure == {(0, 2), (1, 0)} and c[0].possible == {(0, 2), (1, 0), (1, 1)}
    assert c.sources == (str(src), str(tmp_path / "zh-en.mini.gold"))
    other = write(tmp_path, "elsewhere.txt", "1-3 2-1\n1-1\n")
    assert read_corpus(src, "talp", gold=other)[0].possible == {(0, 2), (1, 0)}


@pytest.mark.parametrize("text, gold, where, line, pattern", [
    ("a b ||| x\n", "1-1\n2-1\n", "gold", 2, r"line-count mismatch"),
    ("a b ||| x\nc ||| y\n", "1-1\n", "src", 2, r"line-count mismatch"),
    ("a b x\n", "1-1\n", "src", 1, r"expected 'source words \|\|\| target words'"),
    ("a b ||| x ||| y\n", "1-1\n", "src", 1, r"expected 'source words"),
    ("a b |||\n", "\n", "src", 1, r"empty pair: no target words"),
    ("a b ||| x\n", "0-1\n", "gold", 1, r"source index 0 out of range.*1-based"),
    ("a b ||| x\n", "3-1\n", "gold", 1, r"source index 3 out of range \(source has 2 words; indices are 1-based"),
    ("a b ||| x\n", "1-1 1p1\n", "gold", 1, r"both as sure"),
])
def test_talp_errors(tmp_path, text, gold, where, line, pattern):
    src = write(tmp_path, "zh-en.t.src-tgt", text)
    gold_path = write(tmp_path, "zh-en.t.gold", gold)
    err = raises_at(src, line, pattern)
    assert Path(err.path) == (gold_path if where == "gold" else src)


def test_talp_without_gold_file(tmp_path):
    src = write(tmp_path, "zh-en.t.src-tgt", "a ||| b\n")
    raises_at(src, None, r"gold alignment file .*zh-en.t.gold not found; pass gold=")


# ---------------------------------------------------------------- pharaoh


def test_pharaoh_round_trip_and_language_from_suffixes(tmp_path):
    c = Corpus([pair("1", sure=[(0, 0)], possible=[(1, 1)]), pair("2", src="a", tgt="b", sure=[])], "en", "de")
    paths = tmp_path / "train.en", tmp_path / "train.de", tmp_path / "train.align"
    write_pharaoh(c, *paths)
    assert paths[2].read_text() == "0-0 1p1\n\n"
    back = read_corpus(paths[0], tgt=paths[1], gold=paths[2])
    assert (back.src_lang, back.tgt_lang) == ("en", "de") and back.pairs == c.pairs
    assert detect_format(paths[0], tgt=paths[1]) == "pharaoh"


def test_pharaoh_errors(tmp_path):
    files = (("en", "a b\nc\n"), ("de", "x\ny\n"), ("al", "0-0\n"))
    s, t, g = (write(tmp_path, f"en-de.{x}", body) for x, body in files)
    raises_at(s, 2, r"line-count mismatch: .* has 2 lines, .*en-de.al has 1", tgt=t, gold=g)
    raises_at(s, None, r"needs the target text \(tgt=\) and alignments \(gold=\)", format="pharaoh")
    g.write_text("0-0\n0-1\n")
    raises_at(s, 2, r"target index 1 out of range \(target has 1 words", tgt=t, gold=g)


# ---------------------------------------------------------------- detection


def test_format_detection(tmp_path):
    write_corpus(toy(1), tmp_path / "own.txt")
    assert detect_format(tmp_path / "own.txt") == "alignheads"
    assert detect_format(write(tmp_path, "x.txt", "a\tb\t0-0\n")) == "xlwa"
    assert detect_format(write(tmp_path, "y.txt", "a ||| b\n")) == "talp"
    assert detect_format(write(tmp_path, "z.tsv", "a b\n")) == "xlwa"
    with pytest.raises(DataFormatError, match="cannot tell the format"):
        detect_format(write(tmp_path, "z.txt", "a b\n"))
    assert len(read_corpus(tmp_path / "own.txt", "AlignHeads")) == 1
    with pytest.raises(AlignheadsError, match="unknown corpus format 'csv'"):
        read_corpus(tmp_path / "x.txt", "csv")
    raises_at(tmp_path / "missing.tsv", None, r"cannot read file", format="xlwa")


# ---------------------------------------------------------------- validation


def test_validate_counts_and_clean_corpus():
    c = Corpus([pair(sure=[(0, 0)], possible=[(1, 1)]), pair("2", src="a , b", tgt="x", sure=[(0, 0)], su=[2])],
               "en", "de")
    r = validate_corpus(c, strict=True)
    assert (r.n_pairs, r.n_src_words, r.n_tgt_words, r.n_sure, r.n_possible) == (2, 5, 3, 2, 3)
    assert r.ok and r.problems == []
    assert "2 pairs, 5 source words, 3 target words, 2 sure links, 3 possible links" in format_report(r)
    assert "no problems" in format_report(r)


def test_validate_finds_problems_naming_pair_and_word():
    bad = SentencePair("7", ("a", "b", "—"), ("x",), frozenset({(0, 0)}), frozenset({(5, 0)}), frozenset({9}))
    clash = SentencePair("7", ("a",), ("x",), frozenset({(0, 0)}), frozenset(), frozenset({0}))
    object.__setattr__(clash, "possible", frozenset())  # only reachable by bypassing the constructor
    c = Corpus([bad, clash, SentencePair("8", (), ("x",), frozenset(), frozenset())], "en", "de")
    loose = validate_corpus(c).problems
    assert "pair 7: link 5-0 out of range (3 source, 1 target words)" in loose
    assert "pair 7: source unaligned mark 9 out of range (3 words)" in loose
    assert "pair 7: duplicate id" in loose
    assert "pair 7: sure links not in possible: [(0, 0)]" in loose
    assert "pair 8: empty pair (no source or no target words)" in loose
    assert not any("has no link" in p for p in loose)
    strict = validate_corpus(c, strict=True).problems
    assert "pair 7: source word 1 'b' has no link and is not marked unaligned" in strict
    assert not any("'—'" in p for p in strict)  # punctuation needs no link
    marked = Corpus([SentencePair("1", ("a",), ("x",), frozenset({(0, 0)}), frozenset(), frozenset({0}))], "en", "de")
    assert validate_corpus(marked).problems == ["pair 1: source word 0 'a' is marked unaligned but has a link"]


def test_format_report_truncates_long_problem_lists():
    r = ValidationReport(1, 1, 1, 0, 0, [f"pair {i}: x" for i in range(60)])
    text = format_report(r, max_problems=10)
    assert "60 problem(s)" in text and "pair 9: x" in text and "pair 10: x" not in text and "and 50 more" in text


def test_validate_path_reports_or_raises(tmp_path):
    good = write(tmp_path, "en-it.g.tsv", "a b .\tx y\t0-0\n")
    r = validate_path(good, strict=True)
    assert r.n_pairs == 1 and r.problems == ["pair 1: source word 1 'b' has no link and is not marked unaligned",
                                             "pair 1: target word 1 'y' has no link and is not marked unaligned"]
    assert validate_path(good).ok
    with pytest.raises(DataFormatError, match=r"line 1: .*source index 5 out of range"):
        validate_path(write(tmp_path, "en-it.b.tsv", "a b .\tx y\t5-0\n"))


# ---------------------------------------------------------------- shared gold data


def test_shared_xlwa_en_it(shared_gold, tmp_path):
    c = read_corpus(shared_gold / "en-it.xlwa-dev.tsv")
    assert (len(c), c.src_lang, c.tgt_lang) == (103, "en", "it")
    assert all(p.sure == p.possible and p.src_words and p.tgt_words for p in c)
    assert validate_corpus(c).ok
    assert "dell'isola" in c.tgt_surface(0).text
    write_corpus(c, tmp_path / "en-it.tsv")
    assert read_corpus(tmp_path / "en-it.tsv").content_hash() == c.content_hash()


def test_shared_tsinghua_zh_en_and_swap(shared_gold, tmp_path):
    c = read_corpus(shared_gold / "zh-en.tsinghua-dev.src-tgt")
    assert (len(c), c.src_lang, c.tgt_lang) == (150, "zh", "en")
    assert any(p.possible - p.sure for p in c) and validate_corpus(c).ok
    en_zh = c.swap()
    assert (en_zh.src_lang, en_zh.tgt_lang) == ("en", "zh")
    for i, p in enumerate(en_zh):
        src, tgt = en_zh.src_surface(i), en_zh.tgt_surface(i)
        assert all(src.text[a:b] == w for w, (a, b) in zip(p.src_words, src.spans, strict=True))
        assert all(tgt.text[a:b] == w for w, (a, b) in zip(p.tgt_words, tgt.spans, strict=True))
        assert not re.search(r"[\u4e00-\u9fff] +[\u4e00-\u9fff]", tgt.text)  # Chinese shown unspaced
    assert en_zh.tgt_surface(0).text == "科学家一直猜想土卫六上存在着由液态甲烷构成的海洋。"
    write_corpus(en_zh, tmp_path / "en-zh.tsv")
    back = read_corpus(tmp_path / "en-zh.tsv")
    assert back.pairs == en_zh.pairs and back.meta["swapped"] is True
