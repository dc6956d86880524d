"""Text-stream simulation of the simultaneous translator: stream each sentence word by word, log, score.

`simulate` reveals each sentence's source words one by one on a single stream clock (fixed pace or
given word end times; sentences follow each other with a gap), updates the translator at every
word arrival (and when a held-back word becomes accessible), finishes the sentence with a final
update, and scores the outputs: BLEU/chrF (sacrebleu) and AL/LAAL/YAAL computation-unaware (CU: the
source consumed at emission) and computation-aware (CA: plus the wall time the translator spent,
queued: an update starts when both its input has arrived and the previous update has finished).

Sweeps over policy parameters are in `alignheads.simul.sweep`, the oracle test of the AlignAtt rule in
`alignheads.simul.oracle`.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from tqdm.auto import tqdm

from ..base.errors import AlignheadsError, DataFormatError
from ..base.fileio import read_jsonl
from ..base.runfolder import RunFolder
from ..base.text import surface
from ..corpus.pairs import Corpus
from ..heads.headset import HeadLike, HeadSet
from ..model.loader import LoadedModel
from ..model.prompts import PromptLayout
from .coverage import SentenceCoverage, coverage_summary, sentence_coverage
from .evaluation import Instance, clean_scores, instance_records, score_instances
from .policy import END_OF_DRAFT, SENTENCE_END, get_policy
from .translator import (
    NO_NEW_SOURCE,
    NO_SOURCE,
    SimultaneousTranslator,
    SourceWord,
    TranslatorConfig,
    Update,
    policy_trace_frame,
)

UNITS = ("word", "ms")


@dataclass
class SimulationConfig:
    """How the source is streamed and latency is measured."""

    pace: float = 0.4  # seconds per source word when no word times are given
    gap: float = 1.0  # seconds between the end of a sentence and the start of the next on the stream clock
    unit: Literal["word", "ms"] = "word"  # latency unit of delays/source_length: source words or ms
    limit: int | None = None  # first n pairs only
    progress: bool = True
    use_omnisteval: bool = True

    def __post_init__(self):
        if self.unit not in UNITS:
            raise AlignheadsError(f"latency unit must be one of {UNITS}, got {self.unit!r}")
        if not self.pace > 0:
            raise AlignheadsError(f"pace must be > 0 seconds per word, got {self.pace}")
        if self.gap < 0:
            raise AlignheadsError(f"gap must be >= 0 seconds, got {self.gap}")


@dataclass
class SentenceRun:
    """One sentence of a simulation: its instance, its updates, and where it sat on the stream clock."""

    instance: Instance
    updates: list[Update]
    start: float  # stream time at which the sentence's audio/text began
    end_times: list[float]  # absolute word end times

    def trace_frame(self) -> pd.DataFrame:
        """The emissions as `alignheads.lab.viz.policy_trace` plots them (time from the sentence start)."""
        return policy_trace_frame(self.updates, self.start)


@dataclass
class SimulationResult:
    """Instances, scores and per-sentence runs of one simulation."""

    policy: str
    param: Any
    instances: list[Instance]
    scores: dict[str, Any]
    runs: list[SentenceRun] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    coverage: list[SentenceCoverage] = field(default_factory=list)


# ----------------------------------------------------------------------------- word times


def paced_times(n_words: int, start: float, pace: float) -> list[float]:
    """End times of n words spoken at a fixed pace from `start`: start + pace, start + 2·pace, …"""
    return [start + (i + 1) * pace for i in range(n_words)]


def read_word_times(path: str | Path) -> dict[str, list[float]]:
    """Per-pair word end times (seconds from the sentence start) from JSONL lines {"id": …, "end_times": […]}."""
    out: dict[str, list[float]] = {}
    for n, rec in read_jsonl(path, "word times"):
        if not (isinstance(rec.get("id"), str) and isinstance(rec.get("end_times"), list)):
            raise DataFormatError(str(path), n, 'expected {"id": "<pair id>", "end_times": [seconds, ...]}')
        times = rec["end_times"]
        if not all(isinstance(t, (int, float)) and math.isfinite(t) and t >= 0 for t in times):
            raise DataFormatError(str(path), n, "end_times must be finite numbers >= 0")
        if any(b < a for a, b in zip(times, times[1:], strict=False)):
            raise DataFormatError(str(path), n, "end_times must not decrease")
        if rec["id"] in out:
            raise DataFormatError(str(path), n, f"duplicate id {rec['id']!r}")
        out[rec["id"]] = [float(t) for t in times]
    return out


# ----------------------------------------------------------------------------- simulation


def simulate_sentence(
    translator: SimultaneousTranslator,
    src_words: Sequence[str],
    end_times: Sequence[float],
    start: float,
    *,
    unit: str = "word",
    index: int = 0,
    reference: str | None = None,
) -> SentenceRun:
    """Stream one sentence into `translator` (absolute `end_times` on the stream clock) and log its emissions."""
    if len(src_words) != len(end_times):
        raise AlignheadsError(f"sentence {index}: {len(src_words)} words but {len(end_times)} end times")
    if not src_words:
        raise AlignheadsError(f"sentence {index}: no source words")
    translator.reset()
    words = [SourceWord(w, float(t)) for w, t in zip(src_words, end_times, strict=True)]
    last = words[-1].end_time
    hb = translator.config.holdback
    events = sorted({w.end_time for w in words} | {w.end_time + hb for w in words if w.end_time + hb < last})
    events = [t for t in events if t < last] + [last]
    duration = last - start
    sec_per_word = duration / len(words)
    delays: list[float] = []
    elapsed: list[float] = []
    finish = start
    updates = []
    for k, now in enumerate(events):
        final = k == len(events) - 1
        revealed = [w for w in words if w.end_time <= now]
        upd = translator.update(revealed, now, final=final)
        updates.append(upd)
        finish = max(now, finish) + upd.compute_s
        if unit == "word":
            cu, ca = float(len(revealed)), (finish - start) / sec_per_word
        else:
            cu, ca = (now - start) * 1000.0, (finish - start) * 1000.0
        ca = max(ca, elapsed[-1] if elapsed else ca)
        delays += [cu] * len(upd.emitted_units)
        elapsed += [ca] * len(upd.emitted_units)
    length = float(len(words)) if unit == "word" else duration * 1000.0
    instance = Instance(index=index, prediction=translator.target, delays=delays, elapsed=elapsed,
                        source_length=length, reference=reference,
                        source=surface(list(src_words), translator.src_lang).text)
    return SentenceRun(instance, updates, start, [w.end_time for w in words])


def simulate(
    lm: LoadedModel,
    corpus: Corpus,
    heads: Sequence[HeadLike] | HeadSet | None = None,
    policy: str = "alignatt",
    config: TranslatorConfig | None = None,
    sim: SimulationConfig | None = None,
    *,
    layout: PromptLayout | None = None,
    word_times: dict[str, list[float]] | None = None,
    out_dir: str | Path | None = None,
    memo: OrderedDict | None = None,
) -> SimulationResult:
    """Simulate `policy` over `corpus` as a text stream; score it; with `out_dir` write instances.log, scores.json
    and decisions.jsonl (one line per update).

    Ctrl-C or an error part-way keeps the finished sentences: with `out_dir` they are scored and written, marked
    `"partial": true`, and the exception is raised again."""
    sim = sim or SimulationConfig()
    config = config or TranslatorConfig()
    pairs = list(corpus)[: sim.limit] if sim.limit else list(corpus)
    if not pairs:
        raise AlignheadsError(f"corpus {corpus.name!r} has no pairs to simulate")
    for pair in pairs:  # checked before the run, not when it gets there
        if word_times is not None and pair.id not in word_times:
            raise AlignheadsError(f"no word times for pair {pair.id!r}")
        if word_times is not None and len(word_times[pair.id]) != len(pair.src_words):
            raise AlignheadsError(f"pair {pair.id!r}: {len(pair.src_words)} source words but "
                                  f"{len(word_times[pair.id])} end times")
    tr = SimultaneousTranslator(lm, heads, corpus.src_lang, corpus.tgt_lang, policy, config,
                                layout=layout, memo=memo)
    if policy == "alignatt" and word_times is None:
        _warn_if_border_cannot_fire(config, sim.pace)
    folder = RunFolder(out_dir, inputs=corpus.sources) if out_dir is not None else nullcontext()
    with folder:  # held from the start: a second run into the same folder is refused, not mixed
        result, stopped = _run(lm, corpus, pairs, tr, policy, config, sim, word_times, keep_partial=out_dir is not None)
        if out_dir is not None:
            write_simulation(result, folder)
    if stopped is not None:
        raise stopped
    return result


def _run(lm, corpus, pairs, tr, policy, config, sim, word_times, keep_partial: bool
         ) -> tuple[SimulationResult, BaseException | None]:
    """Simulate every pair; Ctrl-C or an error part-way ends the run with the finished sentences (when kept)."""
    clock = 0.0
    runs: list[SentenceRun] = []
    coverage: list[SentenceCoverage] = []
    param = get_policy(policy).param_value(config)
    desc = f"simulate {policy}" + ("" if param is None else f"={param}")
    stopped: BaseException | None = None
    try:
        for i, pair in enumerate(tqdm(pairs, desc=desc, unit="sent", disable=not sim.progress)):
            if word_times is not None:
                ends = [clock + t for t in word_times[pair.id]]
            else:
                ends = paced_times(len(pair.src_words), clock, sim.pace)
            ref = surface(list(pair.tgt_words), corpus.tgt_lang).text
            run = simulate_sentence(tr, pair.src_words, ends, clock, unit=sim.unit, index=i, reference=ref)
            runs.append(run)
            coverage.append(sentence_coverage(i, pair.src_words, run.updates, tr.target, corpus.tgt_lang,
                                              source=run.instance.source, offline=tr.offline(pair.src_words)))
            clock = ends[-1] + sim.gap
    except (KeyboardInterrupt, AlignheadsError) as e:
        if not runs or not keep_partial:
            raise
        stopped = e
    instances = [r.instance for r in runs]
    scores = score_instances(instances, corpus.tgt_lang, use_omnisteval=sim.use_omnisteval)
    st = dict(tr.stats)
    st["prefill_saved"] = st["reused_tokens"] / st["prompt_tokens"] if st["prompt_tokens"] else None
    st["compute_s"] = sum(u.compute_s for r in runs for u in r.updates)
    scores.update({
        "partial": stopped is not None, "policy": policy, "param": param, "corpus": corpus.name, "n_pairs": len(runs),
        "src_lang": corpus.src_lang, "tgt_lang": corpus.tgt_lang, "model": lm.facts.model_id, "model_dtype": lm.dtype,
        "heads": tr.heads_label, "pace_s": None if word_times is not None else sim.pace,
        "holdback_s": config.holdback, "n_empty": sum(not i.prediction.strip() for i in instances),
        "translator": _config_dict(config), "stats": st,
        "decisions": decision_shares(u for r in runs for u in r.updates),
        "coverage": {k: v for k, v in coverage_summary(coverage).items() if k != "sentences"},
    })
    if stopped is not None:
        scores.update(stopped="interrupted" if isinstance(stopped, KeyboardInterrupt) else str(stopped),
                      n_pairs_planned=len(pairs))
    return SimulationResult(policy, param, instances, scores, runs, st, coverage), stopped


def _warn_if_border_cannot_fire(config: TranslatorConfig, pace: float) -> None:
    """At a fixed pace at most ceil(holdback / pace) shown words are not yet accessible, and the border rule can
    only fire on a token attending one of them (or, for b < 0, an accessible word): say so when it never can."""
    pending = math.ceil(config.holdback / pace - 1e-9)
    if config.alignatt.border > pending - 1:
        warnings.warn(f"AlignAtt border b={config.alignatt.border} never stops a draft here: with a hold-back of "
                      f"{config.holdback:g} s at {pace:g} s/word the prompt shows at most {pending} word(s) that are "
                      f"not yet accessible, so only b <= {pending - 1} can fire (e.g. --border -2 for a text "
                      "stream without hold-back)", stacklevel=3)


def _config_dict(config: TranslatorConfig) -> dict:
    return asdict(config)


def decision_shares(updates: Iterable[Update]) -> dict[str, Any]:
    """What stopped the non-final updates that decided on a draft: shares of `stop_rule` (the policy's rule cut
    the draft: AlignAtt's border or rewind, wait-k, cut-last, local agreement), `sentence_end` (the policy took
    all it could, the draft's sentence end was held back) and `end_of_draft` (the whole draft went out)."""
    reasons = [u.stop_reason for u in updates if not u.final and u.stop_reason not in (NO_SOURCE, NO_NEW_SOURCE)]
    n = len(reasons)
    counts = {"end_of_draft": reasons.count(END_OF_DRAFT), "sentence_end": reasons.count(SENTENCE_END)}
    counts["stop_rule"] = n - sum(counts.values())
    return {"updates": n, **{k: (v / n if n else None) for k, v in counts.items()}}


def write_simulation(result: SimulationResult, folder: RunFolder) -> list[Path]:
    """Stage and commit the run's files in `folder`: instances.log, scores.json, coverage.json, decisions.jsonl.

    A write that fails (a full disk) commits scores.json alone, marked `"partial": true` with the reason
    (`RunFolder.commit_partial`), and raises a clear error."""
    try:
        folder.add_jsonl("instances.log", instance_records(result.instances))
        folder.add_json("coverage.json", coverage_summary(result.coverage))
        folder.add_jsonl("decisions.jsonl", ({
            "index": run.instance.index, "time": round(u.time - run.start, 6), "final": u.final,
            "n_source": u.n_source, "n_accessible": u.n_accessible, "new_text": u.new_text,
            "emitted_units": u.emitted_units, "compute_s": round(u.compute_s, 6), **u.decision_trace.to_dict()}
            for run in result.runs for u in run.updates))
        folder.add_json("scores.json", clean_scores(result.scores))
    except OSError as e:
        folder.commit_partial(clean_scores(result.scores), e)
    return folder.commit()

