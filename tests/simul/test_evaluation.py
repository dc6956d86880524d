"""Evaluation layer: instances.log I/O, sacrebleu quality, and our latency cross-checked against OmniSTEval."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU

from alignheads.base.errors import AlignheadsError, DataFormatError
from alignheads.base.languages import target_units
from alignheads.simul.evaluation import (
    Instance,
    clean_scores,
    read_instances,
    score_instances,
    score_longform,
    write_instances,
)

LATENCY_KEYS = [f"{m}_{k}" for k in ("cu", "ca") for m in ("al", "laal", "yaal")]

# Short-form, word level, speech (ms). Covers: hypothesis shorter and longer than the reference (AL != LAAL),
# a first word after the source end (YAAL leaves it out), an empty output (no latency at all).
DE = [
    Instance(0, "Die Katze schläft auf dem Sofa .", [900, 1200, 1500, 2100, 2300, 2500, 2500],
             [1000, 1400, 1800, 2500, 2800, 3100, 3200], 2500, "Die Katze schläft auf dem Sofa ."),
    Instance(1, "Guten Morgen", [1000, 1600], [1300, 2000], 1800, "Guten Morgen , liebe Welt"),
    Instance(2, "Ich habe einen sehr sehr kleinen Hund", [400, 700, 900, 1200, 1500, 1900, 2200],
             [600, 900, 1200, 1600, 2000, 2500, 2900], 2000, "Ich habe einen Hund"),
    Instance(3, "Spät kommt er", [3100, 3200, 3300], [3400, 3600, 3800], 3000, "Er kommt spät"),
    Instance(4, "", [], [], 1500, "Hallo"),
]
# Short-form, character level (zh), text (source words); references spaced as in word-aligned data.
ZH = [
    Instance(0, "猫在沙发上睡觉。", [1, 2, 3, 3, 4, 5, 5, 5], [1.5, 2.4, 3.2, 3.5, 4.8, 5.1, 5.3, 5.4], 5,
             "猫 在 沙发 上 睡觉 。"),
    Instance(1, "早上好", [2, 2, 3], [2.5, 2.9, 3.6], 3, "早上 好 ， 世界"),
    Instance(2, "我有一只非常非常小的狗", [1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 4], [1.2, 1.4, 2.5, 2.7, 3.3, 3.4, 3.6,
             4.1, 4.3, 4.4, 4.6], 4, "我 有 一 只 狗"),
]


def test_target_units():
    assert target_units("Die  Katze schläft.", "de") == ["Die", "Katze", "schläft."]
    assert target_units("猫在 沙发上。", "zh") == ["猫", "在", "沙", "发", "上", "。"]
    assert target_units("", "de") == [] and target_units("  ", "zh") == []


@pytest.mark.parametrize("instances,lang", [(DE, "de"), (ZH, "zh")], ids=["word-de-ms", "char-zh-words"])
def test_own_latency_equals_omnisteval(instances, lang):
    ours = score_instances(instances, lang, use_omnisteval=False)
    omni = score_instances(instances, lang, use_omnisteval=True)
    for key in LATENCY_KEYS:
        assert ours[key] is not None and omni[key] is not None, key
        assert ours[key] == pytest.approx(omni[key], abs=1e-6), key
    assert ours["bleu"] == omni["bleu"] and ours["chrf"] == omni["chrf"]
    assert ours["laal_cu"] != ours["al_cu"]  # the over-long output makes them differ: LAAL is really exercised


def test_zh_bleu_needs_zh_tokenizer():
    hyp, ref = "猫在沙发上睡觉。", "猫在沙发上睡着了。"
    assert BLEU(tokenize="13a").corpus_score([hyp], [[ref]]).score == 0.0  # one "word" per sentence
    ins = Instance(0, hyp, [1, 2, 3, 3, 4, 5, 5, 5], None, 5, ref)
    scores = score_instances([ins], "zh")
    assert scores["bleu_tokenize"] == "zh" and scores["bleu"] > 20
    assert scores["yaal_ca"] is None  # no elapsed: no computation-aware latency


def test_delays_must_match_target_units():
    with pytest.raises(DataFormatError, match="3 words .* 2 values"):
        score_instances([Instance(0, "Die Katze schläft", [1, 2], None, 3, "Die Katze schläft")], "de")
    with pytest.raises(DataFormatError, match="3 non-space characters"):
        score_instances([Instance(0, "早 上好", [1, 2], None, 3, "早上好")], "zh")


def test_instances_log_round_trip(tmp_path):
    from omnisteval.io import load_shortform_instances

    path = tmp_path / "instances.log"
    instances = [*DE[:2], Instance(7, "早上好", [2, 2, 3], None, 3, None, ["talk.wav", 0])]
    write_instances(path, instances)
    assert read_instances(path) == instances
    record = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert {"index", "prediction", "delays", "elapsed", "source_length", "reference", "source"} <= record.keys()
    # OmniSTEval's own reader takes our file as a SimulEval log (it needs references in every line)
    write_instances(path, DE)
    omni = load_shortform_instances(str(path), None, "delays", "elapsed")
    assert [o.emission_cu for o in omni] == [i.delays for i in DE]
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temp file


GOOD = json.dumps({"index": 0, "prediction": "a b", "delays": [1, 2], "elapsed": [1, 2], "source_length": 2})


@pytest.mark.parametrize(
    "line,problem",
    [
        ('{"prediction": "a", "delays": [1,', "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"prediction": "a b", "source_length": 2}', "missing field.*delays"),
        ('{"prediction": "a b", "delays": "1 2", "source_length": 2}', "delays must be a list"),
        ('{"prediction": "a b", "delays": [2, 1], "source_length": 2}', "non-decreasing"),
        ('{"prediction": "a b", "delays": [1, 2], "elapsed": [1], "source_length": 2}', "elapsed has 1"),
        ('{"prediction": "a b", "delays": [1, 2], "source_length": 0}', "source_length must be"),
        ('{"prediction": "a b c", "delays": [1, 2], "source_length": 2}', "3 words"),
    ],
)
def test_malformed_log_names_file_and_line(tmp_path, line, problem):
    path = tmp_path / "instances.log"
    path.write_text(GOOD + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=problem) as err:
        read_instances(path, lang="de")
    assert err.value.line == 2 and err.value.path == str(path)


def test_clean_scores_turns_nan_into_null():
    assert clean_scores({"bleu": 12.5, "yaal_cu": math.nan, "yaal_ca": None}) == {"bleu": 12.5, "yaal_cu": None,
                                                                                   "yaal_ca": None}


# Long-form: one stream (ms), three reference sentences with their (offset, duration) in the audio.
LF_REFS = ["Die Katze schläft auf dem Sofa.", "Der Hund bellt laut!",
           "Wir gehen heute nicht spazieren, weil es regnet."]
LF_SEGMENTS = [(500.0, 2500.0), (3250.0, 1750.0), (5500.0, 4000.0)]
LF_PRED = ("Die Katze schläft auf dem Sofa. Der Hund bellt sehr sehr laut! "
           "Wir gehen heute nicht spazieren, denn es regnet.")
LF_DELAYS = [1500, 1800, 2600, 3000, 3100, 3300, 4200, 4500, 4800, 5000, 5200, 5400,
             6700, 7100, 7600, 8200, 8800, 9500, 9600, 9700]
LF = Instance(0, LF_PRED, LF_DELAYS, [d + 150 + 40 * i for i, d in enumerate(LF_DELAYS)], 10000, None, "talk.wav")
ZH_LF_REFS = ["猫在沙发上睡觉。", "狗叫得很大声！"]
ZH_LF_SEGMENTS = [(0.0, 2000.0), (2500.0, 2000.0)]
ZH_LF_PRED = "猫在沙发上睡觉。狗叫得很响！"
ZH_LF_DELAYS = [400, 600, 900, 1100, 1300, 1700, 1900, 2100, 2900, 3100, 3400, 3800, 4200, 4600]
ZH_LF = Instance(0, ZH_LF_PRED, ZH_LF_DELAYS, [d + 100 for d in ZH_LF_DELAYS], 5000, None, "talk.wav")
LONG_KEYS = [f"long{k}" for k in LATENCY_KEYS]


def _omnisteval_cli(tmp_path: Path, ins: Instance, refs, segments, level_args) -> tuple[dict, list[dict]]:
    """Run `omnisteval longform` on files written from our data; return its scores.tsv and resegmented log."""
    write_instances(tmp_path / "hyp.jsonl", [ins])
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    seg = [{"wav": "talk.wav", "offset": o / 1000, "duration": d / 1000} for o, d in segments]  # seconds
    (tmp_path / "seg.json").write_text(json.dumps(seg), encoding="utf-8")
    script = Path(sys.executable).with_name("omnisteval")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "omnisteval.cli"]
    subprocess.run(
        [*cmd, "longform", "--speech_segmentation", str(tmp_path / "seg.json"), "--ref_sentences_file",
         str(tmp_path / "ref.txt"), "--hypothesis_file", str(tmp_path / "hyp.jsonl"), "--output_folder",
         str(tmp_path / "out"), *level_args],
        check=True, capture_output=True, text=True,
    )
    rows = (tmp_path / "out" / "scores.tsv").read_text(encoding="utf-8").splitlines()[1:]
    names = {"BLEU": "bleu", "chrF": "chrf"}
    names.update({f"Long{m.upper()} ({k.upper()})": f"long{m}_{k}" for m in ("al", "laal", "yaal")
                  for k in ("cu", "ca")})
    scores = {names[n]: float(v) for n, v in (r.split("\t") for r in rows) if n in names}
    reseg = [json.loads(line) for line in (tmp_path / "out" / "instances.resegmented.jsonl").open(encoding="utf-8")]
    return scores, reseg


@pytest.mark.parametrize(
    "ins,refs,segments,lang,level_args",
    [(LF, LF_REFS, LF_SEGMENTS, "de", ["--word_level", "--lang", "de"]),
     (ZH_LF, ZH_LF_REFS, ZH_LF_SEGMENTS, "zh", ["--char_level", "--bleu_tokenizer", "zh"])],
    ids=["word-de", "char-zh"],
)
def test_longform_matches_omnisteval_cli(tmp_path, ins, refs, segments, lang, level_args):
    sources = [f"source sentence {k}" for k in range(len(refs))]
    ours = score_longform(ins, refs, lang, segments, source_sentences=sources,
                          resegmented_path=tmp_path / "reseg.jsonl")
    cli, cli_reseg = _omnisteval_cli(tmp_path, ins, refs, segments, level_args)
    assert set(cli) == {"bleu", "chrf", *LONG_KEYS}
    for key, value in cli.items():
        assert ours[key] == pytest.approx(value, abs=5e-5), key  # the CLI prints 4 decimals
    mine = [json.loads(line) for line in (tmp_path / "reseg.jsonl").open(encoding="utf-8")]
    for a, b in zip(mine, cli_reseg, strict=True):
        assert (a["prediction"], a["emission_cu"], a["emission_ca"]) == (b["prediction"], b["emission_cu"],
                                                                       b["emission_ca"])
    assert [r["source"] for r in mine] == sources
    # our formulas on the same re-segmented sentences give OmniSTEval's numbers
    own = score_longform(ins, refs, lang, segments, use_omnisteval=False)
    for key in LONG_KEYS:
        assert own[key] is not None and ours[key] is not None, key  # None == None would pass the comparison
        assert own[key] == pytest.approx(ours[key], abs=1e-6), key


def test_longform_without_segments_scores_quality_only():
    scores = score_longform(LF, LF_REFS, "de")
    assert scores["bleu"] > 0 and scores["n_segments"] == 3
    assert all(scores[k] is None for k in LONG_KEYS)


def test_longform_rejects_mismatched_segments():
    with pytest.raises(AlignheadsError, match="2 segments but 3 reference"):
        score_longform(LF, LF_REFS, "de", LF_SEGMENTS[:2])
