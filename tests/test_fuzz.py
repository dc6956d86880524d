"""Fuzzing every reader: a clear AlignheadsError naming the file, or a valid result; never another exception.

Inputs are built from the formats' own pieces (ids, tabs, `|||`, links, headers, BOMs, odd Unicode) so
that examples get past the first check, plus raw bytes. Examples are bounded and derandomised, so a
run is fast and repeatable; `ALIGNHEADS_FUZZ_EXAMPLES=3000` tries many more.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alignheads.base.errors import AlignheadsError
from alignheads.corpus.formats import read_corpus, validate_path
from alignheads.corpus.pairs import Corpus
from alignheads.corpus.silver import read_parallel
from alignheads.heads.headset import _ENTRY_FIELDS, _FIELDS, HeadEntry, HeadSet, load_headset
from alignheads.simul.evaluation import read_instances
from alignheads.simul.simulate import read_word_times
from alignheads.speech.audio import load_audio, read_pcm_stream

_DEEP = int(os.environ.get("ALIGNHEADS_FUZZ_EXAMPLES", 0))  # e.g. 3000 for a long, random (not repeatable) run
fuzz = settings(max_examples=_DEEP or 60, derandomize=not _DEEP, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

HEADER = '# alignheads-corpus v1 {"src": "en", "tgt": "de"}'

words = st.sampled_from(["a", "b", "Haus", "ß", "科学", "l'été", ",", ".", "", " ", "\u2028", "\x1c", "\u200b",
                         "é", "#", "|||", "-", "0", "1p2"])
index = st.integers(min_value=-2, max_value=12)
link = st.builds(lambda i, kind, j: f"{i}{kind}{j}", index, st.sampled_from(["-", "p", "x", "--", ""]), index)
mark = st.builds(lambda s, i: f"{s}{i}", st.sampled_from(["s", "t", "u", ""]), index)
sentence = st.lists(words, max_size=6).map(" ".join)
links = st.lists(link, max_size=6).map(" ".join)
marks = st.lists(mark, max_size=3).map(" ".join)
junk = st.text(max_size=30)
line_end = st.sampled_from(["\n", "\r\n", "\n\n", "\r"])


def _lines(parts) -> st.SearchStrategy[str]:
    return st.builds(lambda rows, end: end.join(rows) + end, st.lists(parts, max_size=5), line_end)


alignheads_line = st.one_of(
    st.builds(lambda *f: "\t".join(f), st.sampled_from(["p1", "p2", "", "p1 x"]), sentence, sentence, links, marks),
    st.builds(lambda *f: "\t".join(f), sentence, sentence, links), junk)
alignheads_text = st.builds(lambda bom, head, body: bom + head + "\n" + body, st.sampled_from(["", "\ufeff"]),
                            st.sampled_from([HEADER, HEADER.replace('"de"', '"xx"'), "# alignheads-corpus v2 {}",
                                             "# alignheads-corpus v1 [1]", "# alignheads-corpus v1 {\"src\": 1}", ""]),
                            _lines(alignheads_line))
xlwa_text = _lines(st.one_of(st.builds(lambda *f: "\t".join(f), sentence, sentence, links), junk))
talp_text = _lines(st.one_of(st.builds(lambda s, t: f"{s} ||| {t}", sentence, sentence), junk))
gold_text = _lines(links)


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, str):
        content = content.encode("utf-8", errors="surrogatepass")
    path.write_bytes(content)
    return path


def _clear_or_valid(call, *files: Path):
    """Run `call`; an AlignheadsError must name one of `files`; any other exception fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return call()
    except AlignheadsError as e:
        message = str(e)
        assert message.strip() and any(f.name in message for f in files), message
        return None


def _check_corpus(corpus: Corpus | None) -> None:
    if corpus is None:
        return
    for p in corpus:
        assert p.src_words and p.tgt_words and p.sure <= p.possible
        assert all(0 <= i < len(p.src_words) and 0 <= j < len(p.tgt_words) for i, j in p.possible)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@fuzz
@given(text=st.one_of(alignheads_text, xlwa_text, junk), fmt=st.sampled_from([None, "alignheads", "xlwa"]),
       raw=st.one_of(st.none(), st.binary(max_size=64)))
def test_alignheads_and_xlwa_readers(folder, text, fmt, raw):
    path = _write(folder / "en-de.fuzz.tsv", raw if raw is not None else text)
    _check_corpus(_clear_or_valid(lambda: read_corpus(path, fmt), path))
    report = _clear_or_valid(lambda: validate_path(path, fmt, strict=True), path)
    assert report is None or report.n_pairs >= 0


@fuzz
@given(text=talp_text, gold=gold_text, swap_gold=st.booleans())
def test_talp_reader(folder, text, gold, swap_gold):
    src, gold_path = _write(folder / "zh-en.src-tgt", text), _write(folder / "zh-en.gold", gold)
    if swap_gold:
        gold_path.unlink()
    _check_corpus(_clear_or_valid(lambda: read_corpus(src, "talp"), src, gold_path))


@fuzz
@given(src=_lines(sentence), tgt=_lines(sentence), gold=gold_text)
def test_pharaoh_reader(folder, src, tgt, gold):
    paths = [_write(folder / name, text) for name, text in (("f.en", src), ("f.de", tgt), ("f.align", gold))]
    _check_corpus(_clear_or_valid(lambda: read_corpus(paths[0], "pharaoh", tgt=paths[1], gold=paths[2]), *paths))


@fuzz
@given(text=st.one_of(_lines(st.builds(lambda s, sep, t: f"{s}{sep}{t}", sentence,
                                       st.sampled_from(["\t", " ||| ", "|||", "\t\t", ""]), sentence)),
                      alignheads_text, junk),
       lang=st.sampled_from([None, "zh", "de"]))
def test_parallel_text_reader(folder, text, lang):
    path = _write(folder / "pairs.txt", text)
    result = _clear_or_valid(lambda: read_parallel(path, "en", lang), path)
    assert result is None or len(result.src) == len(result.tgt) > 0


# No subnormals: native libraries (fast-math) may set flush-to-zero, and Hypothesis then cannot draw them.
scalars = (st.none() | st.booleans() | st.integers(-3, 50) | st.floats(allow_nan=True, allow_subnormal=False)
           | st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
head_entry = st.fixed_dictionaries({"layer": st.one_of(st.integers(-2, 50), json_values),
                                    "head": st.one_of(st.integers(-2, 9), json_values)},
                                   optional={"ts": json_values, "count": json_values, "query": json_values,
                                             "source_acc": json_values, "kv_shared": json_values,
                                             "bogus": json_values})
headset_doc = st.fixed_dictionaries(
    {"token_alignment_heads": st.one_of(st.lists(head_entry, max_size=4), json_values)},
    optional={"schema": st.sampled_from(["alignheads.headset/1", "other/2"]), "model_id": json_values,
              "src_lang": json_values, "tgt_lang": json_values, "num_layers": json_values, "num_heads": json_values,
              "kv_shared_layers": json_values, "layout": json_values, "scores": json_values,
              "model_fingerprint": json_values, "promoted": json_values})


def test_the_loader_checks_every_field_of_the_file():
    assert set(_FIELDS) == set(HeadSet.__dataclass_fields__) - {"heads"}
    assert set(_ENTRY_FIELDS) == set(HeadEntry.__dataclass_fields__)


@fuzz
@given(doc=st.one_of(headset_doc, json_values), raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_headset_loader(folder, doc, raw):
    path = _write(folder / "heads.json", raw if raw is not None else json.dumps(doc))
    hs = _clear_or_valid(lambda: load_headset(path), path)
    if hs is not None:
        assert isinstance(hs, HeadSet) and hs.heads
        assert all(isinstance(h.layer, int) and isinstance(h.head, int) for h in hs.heads)
        assert hs.top(1) == [hs.heads[0].key]


# The AlignAtt4LLM authors' formats: word_alignments_<dir>.json (sparse span anchors) and their head files.
span = st.one_of(st.lists(st.integers(-2, 8), min_size=2, max_size=2), json_values)
anchor = st.fixed_dictionaries({"source_span": span, "target_span": span},
                               optional={"source_words": json_values, "target_words": json_values,
                                         "confidence": json_values})
a4l_pair = st.fixed_dictionaries(
    {"source_words": st.one_of(st.lists(words, max_size=6), json_values),
     "target_words": st.one_of(st.lists(words, max_size=6), json_values),
     "alignments": st.one_of(st.lists(anchor, max_size=3), json_values)},
    optional={"pair_id": json_values, "direction": st.sampled_from(["en-it", "en-xx", "it", ""]) | json_values,
              "source_text": json_values, "target_text": json_values})
a4l_heads = st.fixed_dictionaries(
    {"token_alignment_heads": st.one_of(st.lists(head_entry, max_size=4), json_values)},
    optional={"model": st.sampled_from(["google/gemma-4-E4B-it", "Qwen/Qwen3-1.7B", ""]) | json_values,
              "direction": st.sampled_from(["en-de", "en-xx", "ende"]) | json_values,
              "score_name": json_values, "num_layers": json_values, "num_heads": json_values,
              "ts_matrix": json_values, "promotion_gate": json_values, "used_pairs": json_values})


@fuzz
@given(rows=st.one_of(st.lists(a4l_pair, max_size=3), json_values), raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_authors_alignment_reader(folder, rows, raw):
    path = _write(folder / "word_alignments_en-it.json", raw if raw is not None else json.dumps(rows))
    corpus = _clear_or_valid(lambda: read_corpus(path), path)
    assert corpus is None or (isinstance(corpus, Corpus) and len(corpus) > 0)


@fuzz
@given(doc=a4l_heads)
def test_authors_head_file_loader(folder, doc):
    path = _write(folder / "translation_heads_a4l.json", json.dumps(doc))
    hs = _clear_or_valid(lambda: load_headset(path), path)
    if hs is not None:
        assert isinstance(hs, HeadSet) and hs.heads and hs.top(1) == [hs.heads[0].key]


record = st.dictionaries(st.sampled_from(["index", "prediction", "delays", "elapsed", "source_length", "reference",
                                          "source", "id", "end_times"]), json_values, max_size=7)


@fuzz
@given(records=st.lists(st.one_of(record, json_values), max_size=4), raw=st.one_of(st.none(), st.binary(max_size=40)))
def test_instances_and_word_time_readers(folder, records, raw):
    text = "\n".join(json.dumps(r) for r in records)
    path = _write(folder / "instances.log", raw if raw is not None else text)
    _clear_or_valid(lambda: read_instances(path, "de"), path)
    _clear_or_valid(lambda: read_word_times(path), path)


@settings(fuzz, max_examples=min(fuzz.max_examples, 30))
@given(data=st.binary(max_size=200), riff=st.booleans())
def test_audio_file_reader(folder, data, riff):
    if riff:  # a WAV header with fuzzed sizes and a fuzzed body
        data = b"RIFF" + data[:4].ljust(4, b"\0") + b"WAVEfmt " + data[4:]
    path = _write(folder / "a.wav", data)
    audio = _clear_or_valid(lambda: load_audio(path), path)
    assert audio is None or (audio.dtype == np.float32 and np.isfinite(audio).all())


@fuzz
@given(data=st.binary(max_size=41), chunk=st.integers(1, 8))
def test_pcm_stream_reader(data, chunk):
    chunks = list(_clear_or_valid(lambda: list(read_pcm_stream(io.BytesIO(data), chunk)), Path("<pcm stream>"))
                  or [])
    assert sum(c.size for c in chunks) == len(data) // 2 and all(0 < c.size <= chunk for c in chunks)
