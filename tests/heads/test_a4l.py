"""The AlignAtt4LLM authors' data and head files: reader, registry, export for their runtime, any language."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alignheads.base.errors import AlignheadsError, DataFormatError
from alignheads.base.languages import get_language
from alignheads.base.text import surface
from alignheads.cli.commands import main
from alignheads.corpus.formats import read_corpus, write_corpus, write_pharaoh
from alignheads.corpus.pairs import SentencePair
from alignheads.corpus.validation import validate_corpus
from alignheads.heads.alignatt4llm import export_a4l, save_a4l
from alignheads.heads.headset import GEMMA4_E4B_SHAPE, Head, HeadEntry, HeadSet, HeadSetError, load_headset
from alignheads.heads.registry import PUBLISHED, PUBLISHED_DIR, SHARED, published_headset, published_table, vendored
from alignheads.heads.scoring import alignment_counts
from alignheads.model.prompts import PromptLayout

ROOT = Path(__file__).resolve().parents[2]
A4L = ROOT.parent / "shared" / "data" / "a4l"
EN_RO = Path(__file__).resolve().parents[1] / "data" / "en-ro.sample.tsv"


@pytest.fixture
def a4l_data() -> Path:
    if not A4L.is_dir():
        pytest.skip(f"the AlignAtt4LLM data is not at {A4L} (only present beside the project checkout)")
    return A4L


def their_reader(directory: Path, model: str, src: str, tgt: str, top_k: int = 4, kv_shared=()) -> list[tuple]:
    """What DESIGN.md §4b records of their runtime: the file by name, token_alignment_heads[:top_k], int layer,
    int head, float ts (a missing or null ts raises), and their vLLM observer raising on KV-shared layers."""
    path = directory / f"translation_heads_{model.replace('/', '_').replace('.', '_')}_{src}-{tgt}.json"
    payload = json.loads(path.read_text(encoding="utf-8"))
    heads = [(int(e["layer"]), int(e["head"]), float(e["ts"])) for e in payload["token_alignment_heads"][:top_k]]
    for layer, _, _ in heads:
        if layer in kv_shared:
            raise RuntimeError(f"observer: layer {layer} shares its KV cache")
    return heads


# --------------------------------------------------------------------------- their alignment sets

def _write_a4l(tmp_path: Path, rows, name="word_alignments_en-de.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return p


def _row(**kw):
    row = {"pair_id": 3, "direction": "en-de", "source_words": ["The", "Red", "Cross", "helps", "."],
           "target_words": ["Das", "Rote", "Kreuz", "hilft", " ", "% ", "."],
           "alignments": [{"source_span": [1, 3], "target_span": [1, 3], "confidence": 1.0},
                          {"source_span": [3, 4], "target_span": [3, 4], "confidence": 0.9},
                          {"source_span": [4, 5], "target_span": [6, 7]}]}
    row.update(kw)
    return row


def test_a4l_reader_spans_sparse_links_and_normalised_words(tmp_path):
    c = read_corpus(_write_a4l(tmp_path, [_row(), _row(pair_id=4)]))
    assert (c.src_lang, c.tgt_lang, len(c)) == ("en", "de", 2)
    p = c[0]
    assert p.id == "3" and p.sparse and p.tgt_words == ("Das", "Rote", "Kreuz", "hilft", "%", ".")
    assert p.sure == {(3, 3), (4, 5)}  # single word <-> single word; the '' word is dropped, '.' moves to 5
    assert p.possible - p.sure == {(1, 1), (1, 2), (2, 1), (2, 2)}  # a span link: every word pair possible
    assert p.linked_targets == {1, 2, 3, 5}
    report = validate_corpus(c, strict=True)  # sparse: unlinked words are not problems
    assert report.ok and report.n_sparse == 2 and report.n_linked_tgt == 8 and report.n_anchor_links == 6
    assert report.notes == {"empty words dropped": 2, "words stripped or split at whitespace": 2}
    assert p.swapped().sparse and c.swap()[0].linked_targets == {1, 2, 3, 4}


def test_sparse_gold_counts_only_linked_target_words():
    words = ("a", "b", "c")
    exhaustive = SentencePair("1", words, words, frozenset({(0, 0)}), frozenset())
    sparse = SentencePair("1", words, words, frozenset({(0, 0)}), frozenset(), sparse=True)
    pred = [(0, 0), (2, 1), (1, 2)]  # target words 1 and 2 have no gold link
    assert alignment_counts(pred, exhaustive).tolist() == [1, 1, 3, 1]  # unlinked = unaligned: 2 wrong links
    assert alignment_counts(pred, sparse).tolist() == [1, 1, 1, 1]  # unlinked = unknown: not counted


def test_sparse_corpus_round_trips_and_pharaoh_refuses(tmp_path):
    c = read_corpus(_write_a4l(tmp_path, [_row()]))
    write_corpus(c, tmp_path / "c.tsv")
    back = read_corpus(tmp_path / "c.tsv")
    assert back[0].sparse and back.content_hash() == c.content_hash()
    with pytest.raises(DataFormatError, match="sparse"):
        write_pharaoh(c, tmp_path / "s", tmp_path / "t", tmp_path / "a")


@pytest.mark.parametrize("rows,pattern", [
    ([_row(alignments=[{"source_span": [1, 9], "target_span": [1, 2]}])],
     r"pair 0 \(pair_id 3\): alignments\[0\]\.source_span: expected \[start, end\).*source has 5 words.*\[1, 9\]"),
    ([_row(alignments=[{"source_span": [1, 2], "target_span": [4, 5]}])], r"target_span \[4, 5\] covers only empty"),
    ([_row(alignments=[{"source_span": [1, 2], "target_span": [1, 2], "confidence": "high"}])],
     r"alignments\[0\]\.confidence"),
    ([_row(), _row()], r"pair 1 \(pair_id 3\): duplicate pair_id"),
    ([_row(), _row(pair_id=5, direction="en-it")], r"disagree on 'direction'"),
    ([_row(target_words="Das Kreuz")], r"pair 0 \(pair_id 3\): field 'target_words' must be a list"),
    ([_row(alignments=None)], r"field 'alignments' must be a list"),
    ([], r"no sentence pairs"),
])
def test_a4l_reader_errors_name_file_pair_and_field(tmp_path, rows, pattern):
    path = _write_a4l(tmp_path, rows)
    with pytest.raises(DataFormatError, match=pattern) as e:
        read_corpus(path)
    assert str(path) in str(e.value)


def test_a4l_reader_bad_json_and_languages(tmp_path):
    p = tmp_path / "word_alignments_en-de.json"
    p.write_text('[{"pair_id": 1,\n "source_words": [}]')
    with pytest.raises(DataFormatError, match=r"line 2: not valid JSON"):
        read_corpus(p)
    with pytest.raises(DataFormatError, match="file says 'en-de'"):
        read_corpus(_write_a4l(tmp_path, [_row()]), tgt_lang="it")


def test_their_four_alignment_sets_validate(a4l_data, capsys):
    paths = [a4l_data / "word_alignments" / f"word_alignments_{d}.json" for d in ("en-de", "en-it", "en-zh", "cs-en")]
    assert main(["data", "validate", *map(str, paths)]) == 0
    out = capsys.readouterr().out
    for n_pairs, n_links in ((903, 4813), (907, 5098), (880, 4181), (512, 3416)):
        assert f"{n_pairs} pairs" in out and f"sparse anchors ({n_links} span links) in {n_pairs} pairs" in out
    c = read_corpus(paths[2])
    assert (c.src_lang, c.tgt_lang) == ("en", "zh") and all(p.sparse for p in c)


# --------------------------------------------------------------------------- their head files, the registry

def test_vendored_files_are_theirs_unchanged_with_licence_and_commit(a4l_data):
    for theirs in sorted((a4l_data / "heads").glob("*.json")):
        assert (PUBLISHED_DIR / theirs.name).read_bytes() == theirs.read_bytes()
    assert len(vendored()) == len(list((a4l_data / "heads").glob("*.json"))) == 13
    assert (PUBLISHED_DIR / "LICENSE").read_text() == (a4l_data / "LICENSE").read_text()
    assert (a4l_data / ".commit").read_text().split()[0] in (PUBLISHED_DIR / "SOURCE").read_text()


def test_their_files_load_with_model_languages_and_top_k_4():
    hs = load_headset(PUBLISHED_DIR / "translation_heads_xiaomi-research_MiLMMT-46-4B-v0_1_en-zh.json")
    assert (hs.model_id, hs.src_lang, hs.tgt_lang, hs.num_layers, hs.num_heads) == (
        "xiaomi-research/MiLMMT-46-4B-v0.1", "en", "zh", 34, 8)
    assert hs.top() == [Head(11, 2), Head(11, 3), Head(6, 4), Head(4, 2)] and len(hs.heads) == 52
    assert hs.calibration["n_pairs_scored"] == 880 and np.array(hs.scores["ts"]["own"]).shape == (34, 8)
    de = load_headset(PUBLISHED_DIR / "translation_heads_google_gemma-4-E4B-it_en-de.json")
    assert de.promoted and de.top_k == 4 and de.kv_shared_layers == GEMMA4_E4B_SHAPE["kv_shared_layers"]
    for name in ("shared_kernel_top8", "multilingual_union_top8_cap10", "google_gemma-4-E4B-it_en-fr_provisional_"
                 "shared_kernel"):
        any_dir = load_headset(PUBLISHED_DIR / f"translation_heads_{name}.json")
        assert (any_dir.model_id, any_dir.num_layers, any_dir.num_heads) == ("google/gemma-4-E4B-it", 42, 8)
        assert (any_dir.src_lang, any_dir.tgt_lang) == ("*", "*") and len(any_dir.top()) == 4


def test_registry_lists_every_file_and_the_paper_sets_have_numeric_ts():
    t = published_table()
    assert set(t.columns) >= {"model", "direction", "pairs", "layer", "head", "ts"} and t["ts"].notna().all()
    assert t.groupby("file").size().sum() == sum(len(h.heads) for h in vendored().values())
    assert t[t["direction"] == "cs-en"]["pairs"].unique().tolist() == [512]
    for tgt in ("de", "it", "zh"):
        hs = published_headset("google/gemma-4-E4B-it", "en", tgt)
        assert all(isinstance(e.ts, float) for e in hs.heads) and [e.ts for e in hs.heads] == sorted(
            (e.ts for e in hs.heads), reverse=True)
    assert {(e.layer, e.head) for e in PUBLISHED[("google/gemma-4-E4B-it", "en", "it")].heads} == set(SHARED)
    assert published_headset("google/gemma-4-E4B-it", "en", "de").heads[0].ts == pytest.approx(0.833, abs=5e-4)
    assert published_headset("Qwen/Qwen3-1.7B", "en", "de").top(1) == [Head(11, 13)]
    with pytest.raises(HeadSetError, match="known:.*MiLMMT"):
        published_headset("google/gemma-4-E4B-it", "en", "ro")


def test_gemma4_kv_shared_layout_matches_the_config_class():
    from transformers import Gemma4TextConfig

    cfg = Gemma4TextConfig(num_hidden_layers=42, num_kv_shared_layers=18, hidden_size_per_layer_input=16)
    modes, types = cfg.kv_sharing_modes, cfg.layer_types
    expected = {i: max(j for j in range(42) if modes[j] != "reuse" and types[j] == types[i])
                for i in range(42) if modes[i] == "reuse"}
    assert expected == GEMMA4_E4B_SHAPE["kv_shared_layers"]


def test_translator_uses_their_top_4(tiny4):
    """Their file's set drives the translator with its first 4 heads, not all 84 (heads mapped into tiny-gemma4's
    6 x 4 range, since Gemma-4-E4B cannot be loaded here)."""
    from alignheads.simul.translator import SimultaneousTranslator

    hs = load_headset(PUBLISHED_DIR / "translation_heads_google_gemma-4-E4B-it_en-de.json")
    small = HeadSet([HeadEntry(e.layer % 4, e.head % 4, e.ts) for e in hs.heads], "unknown", "en", "de",
                    None, None, top_k=hs.top_k)
    assert len(SimultaneousTranslator(tiny4, small, "en", "de").heads) == 4


# --------------------------------------------------------------------------- export for their runtime

def _ours(heads, **kw) -> HeadSet:
    entries = [HeadEntry(layer, head, ts=ts, count=10, query=q, **kw) for layer, head, ts, q in heads]
    return HeadSet(entries, "google/gemma-4-E4B-it", "en", "de", 42, 8,
                   kv_shared_layers=dict(GEMMA4_E4B_SHAPE["kv_shared_layers"]), calibration={"n_pairs_scored": 36})


def test_export_round_trips_through_their_reader(tmp_path):
    hs = _ours([(6, 5, 0.70, "own"), (11, 3, 0.83, "own"), (5, 0, 0.64, "own"), (17, 3, 0.74, "own"),
                (10, 0, 0.50, "own")])
    path = save_a4l(hs, tmp_path)
    assert path.name == "translation_heads_google_gemma-4-E4B-it_en-de.json"
    heads = their_reader(tmp_path, "google/gemma-4-E4B-it", "en", "de", kv_shared=range(24, 42))
    assert heads == [(11, 3, 0.83), (17, 3, 0.74), (6, 5, 0.70), (5, 0, 0.64)]  # sorted by ts, exactly 4
    payload = json.loads(path.read_text())
    assert len(payload["token_alignment_heads"]) == 4 and payload["direction"] == "en-de"
    assert payload["model"] == "google/gemma-4-E4B-it" and payload["used_pairs"] == 36
    back = load_headset(path)  # and ours reads it with the same meaning
    assert back.top() == [Head(11, 3), Head(17, 3), Head(6, 5), Head(5, 0)] and back.top_k == 4
    assert their_reader(tmp_path, "google/gemma-4-E4B-it", "en", "de", top_k=2) == heads[:2]
    save_a4l(hs, tmp_path, top_k=2)
    assert len(json.loads(path.read_text())["token_alignment_heads"]) == 2


def test_export_into_a_new_folder_named_with_a_trailing_slash(tmp_path):
    hs = _ours([(11, 3, 0.83, "own"), (6, 5, 0.70, "own"), (5, 0, 0.64, "own"), (17, 3, 0.74, "own")])
    out = save_a4l(hs, f"{tmp_path}/new/")
    assert out == tmp_path / "new" / "translation_heads_google_gemma-4-E4B-it_en-de.json" and out.is_file()


def test_loaded_sets_do_not_share_the_gemma4_layout(tmp_path):
    a, b = (published_headset("google/gemma-4-E4B-it", "en", d) for d in ("de", "it"))
    a.kv_shared_layers.clear()
    assert b.kv_shared_layers and GEMMA4_E4B_SHAPE["kv_shared_layers"]


def test_their_own_files_convert_and_read_back(tmp_path):
    for name, hs in vendored().items():
        if hs.src_lang == "*" or any(e.kv_shared for e in hs.heads[:4]):
            continue
        out = save_a4l(hs, tmp_path)
        assert out.name == name
        assert their_reader(tmp_path, hs.model_id, hs.src_lang, hs.tgt_lang) == [
            (e.layer, e.head, round(e.ts, 6)) for e in hs.heads[:4]]


@pytest.mark.parametrize("heads,kw,pattern", [
    ([(11, 2, 0.9, "emit"), (3, 3, 0.8, "own"), (6, 0, 0.7, "own"), (5, 0, 0.6, "own")], {},
     r"head L11H2@emit is read at the emitting position"),
    ([(11, 3, 0.9, "own"), (29, 2, 0.8, "own"), (6, 0, 0.7, "own"), (5, 0, 0.6, "own")], {},
     r"head L29H2 is on KV-shared layer 29 \(it reuses layer 23's keys"),
    ([(11, 3, 0.9, "own"), (3, 3, 0.8, "own"), (6, 0, 0.7, "own")], {}, r"has 3 heads.*--top-k 3"),
    ([(11, 3, None, "own"), (3, 3, 0.8, "own"), (6, 0, 0.7, "own"), (5, 0, 0.6, "own")], {}, r"L11H3 has no numeric"),
])
def test_export_refuses_what_their_runtime_cannot_express(tmp_path, heads, kw, pattern):
    with pytest.raises(HeadSetError, match=pattern):
        save_a4l(_ours(heads, **kw), tmp_path)
    assert not list(tmp_path.iterdir())


def test_export_refuses_learned_weights_and_any_direction_without_languages(tmp_path):
    hs = _ours([(11, 3, 0.9, "own"), (3, 3, 0.8, "own"), (6, 0, 0.7, "own"), (5, 0, 0.6, "own")])
    weighted = HeadSet([HeadEntry(e.layer, e.head, e.ts, weight=w) for e, w in zip(hs.heads, (0.4, 0.3, 0.2, 0.1),
                                                                                     strict=True)],
                       hs.model_id, "en", "de", 42, 8)
    with pytest.raises(HeadSetError, match=r"learned per-head weights \(L11H3=0.4"):
        export_a4l(weighted)
    kernel = vendored()["translation_heads_shared_kernel_top8.json"]
    with pytest.raises(HeadSetError, match="any direction"):
        export_a4l(kernel)
    assert export_a4l(kernel, src="en", tgt="fr")["direction"] == "en-fr"
    with pytest.raises(HeadSetError, match="calibrated for en-de"):
        export_a4l(hs, tgt="it")


def test_cli_convert_and_list(tmp_path, capsys):
    en_cs = PUBLISHED_DIR / "translation_heads_google_gemma-4-E4B-it_en-cs.json"
    assert main(["heads", "convert", str(en_cs), "--runtime", "a4l", "--out", str(tmp_path)]) == 2
    assert "head L29H2 is on KV-shared layer 29" in capsys.readouterr().err  # their own en-cs top-4
    assert main(["heads", "convert", str(en_cs), "--runtime", "a4l", "--out", str(tmp_path), "--top-k", "3"]) == 0
    assert their_reader(tmp_path, "google/gemma-4-E4B-it", "en", "cs", top_k=4, kv_shared=range(24, 42)) == [
        (11, 3, 0.817389), (17, 3, 0.764448), (6, 5, 0.649332)]
    assert main(["heads", "convert", str(en_cs), "--runtime", "a4l", "--out", str(tmp_path / "x.json"),
                 "--top-k", "3"]) == 2
    assert "call it translation_heads_google_gemma-4-E4B-it_en-cs.json" in capsys.readouterr().err
    assert main(["heads", "list"]) == 0
    assert "L29H2:0.581(kv-shared)" in capsys.readouterr().out


def test_score_runtime_a4l_leaves_out_kv_shared_layers(tiny4, tmp_path, capsys, one_thread):
    out = tmp_path / "out"
    assert main(["score", "--model", "tiny-gemma4", "--data", str(ROOT / "data" / "gold" / "en-de.dev.tsv"),
                 "--src", "en", "--tgt", "de", "--limit", "3", "--threshold", "-1", "--runtime", "a4l",
                 "--out", str(out)]) == 0
    assert "KV-shared layers 4-5 are left out" in capsys.readouterr().out
    heads = their_reader(out, "tiny-gemma4", "en", "de", kv_shared=(4, 5))
    assert len(heads) == 4 and [h[2] for h in heads] == sorted((h[2] for h in heads), reverse=True)


# --------------------------------------------------------------------------- any language

def test_any_iso_or_bcp47_code_and_the_script_rules():
    assert (get_language("ro").name, get_language("ron").code, get_language("Romanian").code) == ("Romanian", "ro",
                                                                                                "ro")
    assert get_language("pt-BR").code == "pt" and get_language("zh_Hant").code == "zh"
    assert get_language("iw").code == "he" and get_language("tl").whisper == "tl"
    for code in ("zh", "ja", "th", "lo", "km", "my"):
        assert not get_language(code).spaced
    assert get_language("fr").elides and get_language("ca").elides and not get_language("ro").elides
    assert get_language("tlh").whisper is None  # Klingon: a valid code Whisper does not know
    assert surface(["l'", "homme"], "fr").text == "l'homme" and surface(["l'", "om"], "ro").text == "l' om"
    assert surface(["สวัสดี", "ครับ"], "th").text == "สวัสดีครับ"
    for bad in ("xx", "qq-ZZ", "", "und"):
        with pytest.raises(AlignheadsError, match="unknown language"):
            get_language(bad)


def test_score_en_ro(embedded, tmp_path, capsys, one_thread):
    assert main(["score", "--data", str(EN_RO), "--src", "en", "--tgt", "ro", "--out", str(tmp_path)]) == 0
    hs = load_headset(tmp_path / "translation_heads_gemma-3-270m-Q4_K_M_en-ro.json")
    assert (hs.src_lang, hs.tgt_lang) == ("en", "ro") and hs.heads and hs.calibration["n_pairs_scored"] == 4
    assert "Romanian:" in PromptLayout.from_dict(hs.layout).head_text(embedded.tokenizer, "x")[0]


# --------------------------------------------------------------------------- learned head weights

def test_policy_weights_replace_the_mean():
    from alignheads.simul.policy import AlignAttConfig, alignatt_positions

    attn = np.zeros((2, 3, 5))
    attn[0, :, 1] = 1.0  # head 0 looks at word 1, head 1 at word 4 (twice as hard)
    attn[1, :, 4] = 2.0
    raw = AlignAttConfig(z_score=False, median_width=1)
    assert alignatt_positions(attn, raw)[0].tolist() == [4, 4, 4]
    assert alignatt_positions(attn, raw, [0.9, 0.1])[0].tolist() == [1, 1, 1]
    assert alignatt_positions(attn, raw, [1.0, 1.0])[0].tolist() == alignatt_positions(attn, raw)[0].tolist()
    for bad in ([1.0], [-1.0, 2.0], [0.0, 0.0]):
        with pytest.raises(AlignheadsError, match="head weights"):
            alignatt_positions(attn, raw, bad)


def test_translator_decides_with_the_head_sets_weights(tiny3, one_thread):
    from alignheads.simul.policy import AlignAttConfig
    from alignheads.simul.translator import SimultaneousTranslator, SourceWord, TranslatorConfig

    hs = HeadSet([HeadEntry(2, 1, ts=0.5, weight=1.0), HeadEntry(0, 3, ts=0.4, weight=0.0)],
                 tiny3.facts.model_id, "en", "de", tiny3.facts.num_layers, tiny3.facts.num_heads)
    tr = SimultaneousTranslator(tiny3, hs, "en", "de", config=TranslatorConfig(
        alignatt=AlignAttConfig(border=-1, max_draft=6)))
    assert tr.head_weights == [1.0, 0.0]
    src = "For more than twenty years , BLEU has been the standard".split()
    up = tr.update([SourceWord(w, 0.4 * (i + 1)) for i, w in enumerate(src)], 10.0)
    frame = up.decision_trace.to_frame()
    assert len(frame) and (frame["position"] == frame["head_positions"].str[0]).all()  # head 0 alone decides


def test_learned_weights_fit_export_and_refusal(embedded, tmp_path, one_thread):
    from alignheads.heads.calibrate import calibrate
    from alignheads.heads.ensemble import ensemble_metrics
    from alignheads.heads.learned import fit_weights
    from alignheads.heads.scoring import ScoreConfig
    from alignheads.heads.selection import SelectionConfig

    corpus = read_corpus(ROOT / "data" / "gold" / "en-de.dev.tsv").head(10)
    scores, selection, hs = calibrate(embedded, corpus, score_cfg=ScoreConfig(progress=False),
                                      select_cfg=SelectionConfig(method="learned"))
    w = selection.weights
    assert w and min(w) > 0 and sum(w) == pytest.approx(1.0, abs=1e-5) and len(w) < 2 * 18 * 4
    learned = ensemble_metrics(scores, corpus, selection.heads, weights=w)
    mean = scores.baselines.query("kind == 'mean_heads' and query == 'emit'")["aer"].item()
    assert learned["aer"] < mean
    back = load_headset(hs.save(tmp_path / "w.json"))
    assert dict(zip(back.top(), back.top_weights(), strict=True)) == pytest.approx(
        dict(zip(selection.heads, w, strict=True)))  # the file sorts by ts; each head keeps its weight
    with pytest.raises(HeadSetError, match="emitting position|learned per-head weights"):
        export_a4l(back, top_k=len(w))
    again = fit_weights([(scores, corpus)])
    assert list(again.weights) == selection.heads  # deterministic


def test_oracle_uses_the_weights_and_reports_the_mean_wait(tiny3, one_thread):
    from alignheads.simul.oracle import _variant_stats, policy_eval
    from alignheads.simul.policy import AlignAttConfig

    assert _variant_stats([[1, 1, 2, 3]], [{0: 1, 1: 2, 2: 3, 3: 4}], [4])["wait_mean"] == pytest.approx(1.75)
    corpus = read_corpus(ROOT / "data" / "gold" / "en-de.dev.tsv").head(2)
    facts = tiny3.facts
    weighted = HeadSet([HeadEntry(2, 1, weight=1.0), HeadEntry(0, 3, weight=0.0)], facts.model_id, "en", "de",
                       facts.num_layers, facts.num_heads)
    cfgs = [AlignAttConfig(border=-1), AlignAttConfig(border=-3)]
    got = policy_eval(tiny3, corpus, weighted, cfgs, progress=False)
    alone = policy_eval(tiny3, corpus, [Head(2, 1)], cfgs, progress=False)
    assert got["head_weights"] == [1.0, 0.0]
    assert [r["selected"] for r in got["runs"]] == [r["selected"] for r in alone["runs"]]  # weight 0: head 2 is out
    for pending, show_future in ((-1, False), (1, True)):  # no step at all would make everything "on time"
        with pytest.raises(AlignheadsError, match="pending must be"):
            policy_eval(tiny3, corpus, weighted, cfgs, pending=pending, show_future=show_future, progress=False)


def test_the_published_files_ship_as_package_data():
    import tomllib
    from fnmatch import fnmatch

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["alignheads"]
    for path in PUBLISHED_DIR.iterdir():
        assert any(fnmatch(f"heads/published/{path.name}", p) for p in patterns), path.name


def test_oracle_word_that_shares_its_only_token_goes_out_with_the_next():
    from alignheads.simul.oracle import _emission_steps
    from alignheads.simul.policy import AlignAttConfig

    # 3 target words over 3 tokens; words 1 and 2 share tokens 1-2 (a token shared by two words belongs to both)
    got = _emission_steps([0, 1, 2], [[0], [1, 2], [1, 2]], 3, 4, AlignAttConfig(border=0), True, [1, 2, 3])
    assert got == [1, 3, 3]


def test_convert_never_writes_over_its_input(tmp_path, capsys):
    """Reported: `heads convert D/translation_heads_…json --out D/` (or --out the file itself) replaced the calibrated
    set with the converted one and exited 0."""
    import shutil

    src = tmp_path / "translation_heads_google_gemma-4-E4B-it_en-de.json"
    shutil.copy(PUBLISHED_DIR / src.name, src)
    before = src.read_bytes()
    for out in (str(tmp_path), str(tmp_path) + "/", str(src)):
        assert main(["heads", "convert", str(src), "--runtime", "a4l", "--out", out]) == 2
        assert "would replace the input" in capsys.readouterr().err
    assert src.read_bytes() == before
