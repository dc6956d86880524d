"""Scoring simultaneous translation output: SimulEval-style logs, sacrebleu quality, OmniSTEval latency.

Short-form (one output per reference sentence) and long-form (one output stream, re-segmented to the
reference sentences by OmniSTEval's SoftSegmenter) scores both come from OmniSTEval 0.1.10 by default; our own
`alignheads.base.latency` gives the same numbers and is used with `use_omnisteval=False` (tests cross-check them).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from sacrebleu.metrics import BLEU, CHRF

from ..base import latency
from ..base.errors import AlignheadsError, DataFormatError
from ..base.fileio import atomic_open, read_jsonl
from ..base.languages import get_language, target_units


@dataclass
class Instance:
    """One simultaneous output as SimulEval logs it (a sentence, or a whole stream for long-form)."""

    index: int
    prediction: str
    delays: list[float]  # per target unit: source consumed when it was emitted (ms of audio or source words)
    elapsed: list[float] | None  # per target unit: computation-aware emission time, same unit; None if not measured
    source_length: float  # ms of audio or number of source words
    reference: str | None = None
    source: str | list | None = None


def check_instance(ins: Instance, lang: str | None = None, *, where: tuple[str | None, int | None] = (None, None)):
    """Raise DataFormatError unless `ins` is consistent (and, given `lang`, has one delay per target unit)."""

    def fail(problem: str):
        raise DataFormatError(where[0], where[1], f"instance {ins.index}: {problem}")

    if not (isinstance(ins.source_length, (int, float)) and ins.source_length > 0):
        fail(f"source_length must be a number > 0, got {ins.source_length!r}")
    for name in ("delays", "elapsed"):
        values = getattr(ins, name)
        if values is None and name == "elapsed":
            continue
        if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
        ):
            fail(f"{name} must be a list of finite numbers")
        if any(b < a for a, b in pairwise(values)):
            fail(f"{name} must be non-decreasing (output is append-only)")
    if ins.elapsed is not None and len(ins.elapsed) != len(ins.delays):
        fail(f"elapsed has {len(ins.elapsed)} values but delays has {len(ins.delays)}")
    if lang is not None:
        n = len(target_units(ins.prediction, lang))
        if n != len(ins.delays):
            unit = "words" if get_language(lang).spaced else "non-space characters"
            fail(f"prediction has {n} {unit} ({lang}) but delays has {len(ins.delays)} values; one delay per unit")


_FIELDS = ("index", "prediction", "delays", "elapsed", "source_length", "reference", "source")


def instance_records(instances: Sequence[Instance]) -> list[dict[str, Any]]:
    """The lines of a SimulEval-style `instances.log`, one JSON object per instance."""
    records = []
    for ins in instances:
        record = {name: getattr(ins, name) for name in _FIELDS}
        record["prediction_length"] = len(ins.delays)
        if ins.elapsed is None:
            del record["elapsed"]
        records.append(record)
    return records


def write_instances(path: str | os.PathLike, instances: Sequence[Instance]) -> None:
    """Write a SimulEval-style `instances.log` (one JSON object per line) atomically, outside a run folder."""
    with atomic_open(path) as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in instance_records(instances))


def read_instances(path: str | os.PathLike, lang: str | None = None) -> list[Instance]:
    """Read a SimulEval-style `instances.log`; given `lang`, also check one delay per target unit."""
    instances = []
    for lineno, record in read_jsonl(path, "instances log"):
        missing = [k for k in ("prediction", "delays", "source_length") if k not in record]
        if missing:
            raise DataFormatError(str(path), lineno, f"missing field(s) {', '.join(missing)}")
        if not isinstance(record["prediction"], str):
            raise DataFormatError(str(path), lineno, "prediction must be a string")
        if not isinstance(record.get("index", 0), int):
            raise DataFormatError(str(path), lineno, "index must be an integer")
        reference = record.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise DataFormatError(str(path), lineno, "reference must be a string or null")
        ins = Instance(
            index=record.get("index", len(instances)),
            prediction=record["prediction"],
            delays=record["delays"],
            elapsed=record.get("elapsed"),
            source_length=record["source_length"],
            reference=reference,
            source=record.get("source"),
        )
        check_instance(ins, lang, where=(str(path), lineno))
        instances.append(ins)
    return instances


def _quality(hyps: list[str], refs: list[str], tokenize: str) -> dict[str, float]:
    """Corpus BLEU and chrF with sacrebleu (the calls OmniSTEval's scorers make)."""
    return {
        "bleu": BLEU(tokenize=tokenize).corpus_score(hyps, [refs]).score,
        "chrf": CHRF().corpus_score(hyps, [refs]).score,
    }


def _latency_own(segments: list[dict], longform: bool) -> dict[str, float | None]:
    """AL/LAAL/YAAL (CU and CA) averaged over segments with our implementation.

    Each segment: {"cu": delays|None, "ca": elapsed|None, "source_length", "target_length", "recording_end"}.
    """
    scores: dict[str, float | None] = {}
    for kind in ("cu", "ca"):
        rows = [s for s in segments if s[kind]]  # outputs with no units have no latency (as in OmniSTEval)
        if not rows:
            scores.update({f"{m}_{kind}": None for m in ("al", "laal", "yaal")})
            continue
        for name, fn in (("al", latency.al), ("laal", latency.laal)):
            scores[f"{name}_{kind}"] = latency.mean_latency(
                fn(s[kind], s["source_length"], s["target_length"]) for s in rows
            )
        scores[f"yaal_{kind}"] = latency.mean_latency(
            latency.yaal(s[kind], s["source_length"], s["target_length"], longform=longform,
                         recording_end=s["recording_end"])
            for s in rows
        )
    return scores


def _latency_omnisteval(omni_instances: list, longform: bool) -> dict[str, float | None]:
    """AL/LAAL/YAAL (CU and CA) from OmniSTEval's `evaluate_instances`, renamed to our keys."""
    from omnisteval import evaluate_instances

    omni, _, _ = evaluate_instances(omni_instances, compute_quality=False, is_longform=longform)
    prefix = "long_" if longform else ""
    return {
        f"{m}_{kind}": omni.get(f"{'ca_' if kind == 'ca' else ''}{prefix}{m}")
        for kind in ("cu", "ca")
        for m in ("al", "laal", "yaal")
    }


def score_instances(instances: Sequence[Instance], tgt_lang: str, *, use_omnisteval: bool = True) -> dict[str, Any]:
    """Short-form scores: corpus BLEU/chrF and AL/LAAL/YAAL averaged over instances, "_cu" and "_ca".

    Every instance needs a reference. Reference length is counted in the same units as the delays.
    """
    language = get_language(tgt_lang)
    if not instances:
        raise AlignheadsError("no instances to score")
    for ins in instances:
        check_instance(ins, tgt_lang)
        if not ins.reference or not ins.reference.strip():
            raise DataFormatError(None, None, f"instance {ins.index}: a reference is needed for scoring")
    has_ca = [ins.elapsed is not None for ins in instances]
    if any(has_ca) and not all(has_ca):
        raise DataFormatError(None, None, "some instances have elapsed and some do not; give it for all or none")

    scores: dict[str, Any] = {
        "n_instances": len(instances),
        "latency_unit": "word" if language.spaced else "char",
        "bleu_tokenize": language.sacrebleu_tokenize,
        "scorer": "omnisteval" if use_omnisteval else "alignheads",
    }
    scores.update(_quality([i.prediction for i in instances], [i.reference for i in instances],
                           language.sacrebleu_tokenize))
    scores.update(_latencies(instances, tgt_lang, use_omnisteval))
    return scores


def _latencies(instances: Sequence[Instance], tgt_lang: str, use_omnisteval: bool) -> dict[str, Any]:
    """AL/LAAL/YAAL ("_cu", "_ca") averaged over checked instances, by OmniSTEval or our own implementation."""
    language = get_language(tgt_lang)
    unit = "word" if language.spaced else "char"
    if use_omnisteval:
        from omnisteval import Instance as OmniInstance

        # OmniSTEval counts reference length by splitting on " " (words) or len(strip()) (chars); pass the
        # reference as its units joined so both count the same units as the delays.
        sep = " " if language.spaced else ""
        omni = [
            OmniInstance(prediction=ins.prediction, reference=sep.join(target_units(ins.reference, tgt_lang)),
                         latency_unit=unit, index=ins.index, source_length=ins.source_length,
                         emission_cu=ins.delays, emission_ca=ins.elapsed)
            for ins in instances
        ]
        return _latency_omnisteval(omni, longform=False)
    segments = [
        {"cu": ins.delays, "ca": ins.elapsed, "source_length": ins.source_length,
         "target_length": len(target_units(ins.reference, tgt_lang)), "recording_end": math.inf}
        for ins in instances
    ]
    return _latency_own(segments, longform=False)


LATENCIES = [f"{m}_{k}" for k in ("cu", "ca") for m in ("al", "laal", "yaal")]


def sentence_latencies(instances: Sequence[Instance], tgt_lang: str, *,
                       use_omnisteval: bool = True) -> list[dict[str, float | None]]:
    """Each instance's AL/LAAL/YAAL (CU and CA) scored alone by the same scorer as `score_instances`, None where it
    leaves one out (no output; YAAL: nothing emitted before the source ended); its latencies are their means."""
    out = []
    for ins in instances:
        one = _latencies([ins], tgt_lang, use_omnisteval)
        out.append({m: None if one.get(m) is None or math.isnan(one[m]) else one[m] for m in LATENCIES})
    return out


def resegment_longform(
    instance: Instance,
    reference_sentences: Sequence[str],
    tgt_lang: str,
    segments: Sequence[tuple[float, float]] | None = None,
) -> list:
    """Split one long-form output into one OmniSTEval `Instance` per reference sentence (SoftSegmenter).

    `segments` are the reference sentences' (offset, duration) in the unit of the delays (ms), in stream order;
    without them there is no timing and the instances carry no emissions. Moses tokenization (system perl) is
    used for spaced target languages, as `omnisteval longform --lang <tgt>` does.
    """
    from omnisteval import Word, resegment

    language = get_language(tgt_lang)
    check_instance(instance, tgt_lang)
    if not reference_sentences:
        raise AlignheadsError("no reference sentences given")
    char_level = not language.spaced
    # Joined units: single spaces between words, no spaces between characters (as OmniSTEval's loader does).
    refs = [(" " if language.spaced else "").join(target_units(s, tgt_lang)) for s in reference_sentences]
    if segments is None:
        segmentation = [{"offset": 0.0, "duration": 0.0} for _ in refs]
        ref_offsets: list[float | None] = [None] * len(refs)
    else:
        if len(segments) != len(refs):
            raise AlignheadsError(f"{len(segments)} segments but {len(refs)} reference sentences")
        for k, (offset, duration) in enumerate(segments):
            if not (duration > 0 and offset >= 0) or (k and offset < segments[k - 1][0]):
                raise AlignheadsError(f"segment {k}: need offset >= 0 (non-decreasing) and duration > 0, "
                                      f"got ({offset}, {duration})")
        end = max(o + d for o, d in segments)
        segmentation = [{"offset": o, "duration": d, "time_to_recording_end": end - o} for o, d in segments]
        ref_offsets = [o for o, _ in segments]
    for k, seg in enumerate(segmentation):
        seg.update(doc_id=0, seg_id=k)

    ref_words = [[Word(u, emission_cu=off, seq_id=k)
                  for k, (ref, off) in enumerate(zip(refs, ref_offsets, strict=True))
                  for u in (list(ref.lower()) if char_level else ref.lower().split())]]
    units = target_units(instance.prediction, tgt_lang)
    timed = segments is not None
    cu = instance.delays if timed else [None] * len(units)
    ca = instance.elapsed if timed and instance.elapsed is not None else [None] * len(units)
    hyp_words = [[Word(u, emission_cu=d, emission_ca=e) for u, d, e in zip(units, cu, ca, strict=True)]]
    omni, _ = resegment(ref_words, hyp_words, segmentation, refs, char_level=char_level,
                        lang=None if char_level else language.code)
    return omni


def score_longform(
    instance: Instance,
    reference_sentences: Sequence[str],
    tgt_lang: str,
    segments: Sequence[tuple[float, float]] | None = None,
    *,
    source_sentences: Sequence[str] | None = None,
    use_omnisteval: bool = True,
    resegmented_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Long-form scores like `omnisteval longform`: BLEU/chrF and LongAL/LongLAAL/LongYAAL ("_cu", "_ca").

    The output is re-segmented to the reference sentences first (`resegment_longform`); without `segments`
    only quality is scored. `resegmented_path` keeps the per-sentence records as JSONL (with `source` when
    `source_sentences` is given), the input for a separate COMET step.
    """
    language = get_language(tgt_lang)
    if source_sentences is not None and len(source_sentences) != len(reference_sentences):
        raise AlignheadsError(f"{len(source_sentences)} source sentences but {len(reference_sentences)} references")
    omni = resegment_longform(instance, reference_sentences, tgt_lang, segments)
    scores: dict[str, Any] = {
        "n_segments": len(omni),
        "n_empty": sum(not o.prediction.strip() for o in omni),
        "latency_unit": "word" if language.spaced else "char",
        "bleu_tokenize": language.sacrebleu_tokenize,
        "scorer": "omnisteval" if use_omnisteval else "alignheads",
    }
    scores.update(_quality([o.prediction for o in omni], [o.reference for o in omni], language.sacrebleu_tokenize))
    if segments is None:
        scores.update({f"long{m}_{k}": None for k in ("cu", "ca") for m in ("al", "laal", "yaal")})
    else:
        if use_omnisteval:
            lat = _latency_omnisteval(omni, longform=True)
        else:
            lat = _latency_own(
                [{"cu": o.emission_cu, "ca": o.emission_ca, "source_length": o.source_length,
                  "target_length": len(target_units(o.reference, tgt_lang)),
                  "recording_end": o.time_to_recording_end} for o in omni],
                longform=True,
            )
        scores.update({f"long{k}": v for k, v in lat.items()})
    if resegmented_path is not None:
        with atomic_open(resegmented_path) as f:
            for k, o in enumerate(omni):
                record = {"index": o.index, "prediction": o.prediction, "reference": o.reference,
                          "source_length": o.source_length, "emission_cu": o.emission_cu,
                          "emission_ca": o.emission_ca, "time_to_recording_end": o.time_to_recording_end}
                if source_sentences is not None:
                    record["source"] = source_sentences[k]
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return scores


def clean_scores(scores: dict[str, Any]) -> dict[str, Any]:
    """Scores as scores.json holds them: NaN (no defined value) becomes null."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in scores.items()}
