"""Text-stream simulation of the simultaneous translator, oracle policy evaluation, quality-latency sweeps.

`simulate` reveals each sentence's source words one by one on a single stream clock (fixed pace or
given word end times; sentences follow each other with a gap), updates the translator at every
word arrival (and when a held-back word becomes accessible), finishes the sentence with a final
update, and scores the outputs: BLEU/chrF (sacrebleu) and AL/LAAL/YAAL computation-unaware (CU: the
source consumed at emission) and computation-aware (CA: plus the wall time the translator spent,
queued: an update starts when both its input has arrived and the previous update has finished).

`policy_eval` is the oracle test of the AlignAtt rule alone: the reference translation is forced as
the draft, the source is revealed word by word, and a target word counts as premature when the rule
lets it out before all of its gold-aligned source words are available.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .attention import pool_source_words
from .data import Corpus, SentencePair, surface
from .errors import AlignheadsError, DataFormatError
from .evaluation import Instance, score_instances, write_instances, write_scores
from .fileio import atomic_open, read_jsonl
from .headset import Head, HeadSet
from .models import LoadedModel
from .policy import AlignAttConfig, alignatt_cut, alignatt_positions, diagonal_positions
from .prompts import PromptLayout, render
from .translator import (
    POLICIES,
    SimultaneousTranslator,
    SourceWord,
    TranslatorConfig,
    Update,
    _as_heads,
    policy_trace_frame,
)

UNITS = ("word", "ms")
DEFAULT_GRID: dict[str, list] = {
    "alignatt": [1, 0, -1, -2, -3],
    "wait-k": [1, 2, 3, 5],
    "cut-last": [0, 1, 2, 3, 4],
    "local-agreement": [2],
}
CURVE_COLUMNS = ["policy", "param", "bleu", "chrf", "al_cu", "laal_cu", "yaal_cu", "al_ca", "laal_ca", "yaal_ca",
                 "latency_unit", "n_instances", "n_empty", "compute_s", "prefill_saved"]


@dataclass
class SimulationConfig:
    """How the source is streamed and latency is measured."""

    pace: float = 0.4  # seconds per source word when no word times are given
    gap: float = 1.0  # seconds between the end of a sentence and the start of the next on the stream clock
    unit: str = "word"  # latency unit of delays/source_length: "word" (source words) or "ms"
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
        """The emissions as `alignheads.viz.policy_trace` plots them (time from the sentence start)."""
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


def _heads_or_none(heads):
    return heads if heads is not None and (isinstance(heads, HeadSet) or len(heads)) else None


def simulate(
    lm: LoadedModel,
    corpus: Corpus,
    heads: Sequence[Head] | HeadSet | None = None,
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
    and decisions.jsonl (one line per update)."""
    sim = sim or SimulationConfig()
    config = config or TranslatorConfig()
    pairs = list(corpus)[: sim.limit] if sim.limit else list(corpus)
    if not pairs:
        raise AlignheadsError(f"corpus {corpus.name!r} has no pairs to simulate")
    tr = SimultaneousTranslator(lm, _heads_or_none(heads), corpus.src_lang, corpus.tgt_lang, policy, config,
                                layout=layout, memo=memo)
    clock = 0.0
    runs: list[SentenceRun] = []
    desc = f"simulate {policy}={config.param(policy)}"
    for i, pair in enumerate(tqdm(pairs, desc=desc, unit="sent", disable=not sim.progress)):
        if word_times is not None:
            if pair.id not in word_times:
                raise AlignheadsError(f"no word times for pair {pair.id!r}")
            rel = word_times[pair.id]
            if len(rel) != len(pair.src_words):
                raise AlignheadsError(f"pair {pair.id!r}: {len(pair.src_words)} source words but "
                                      f"{len(rel)} end times")
            ends = [clock + t for t in rel]
        else:
            ends = paced_times(len(pair.src_words), clock, sim.pace)
        ref = surface(list(pair.tgt_words), corpus.tgt_lang).text
        run = simulate_sentence(tr, pair.src_words, ends, clock, unit=sim.unit, index=i, reference=ref)
        runs.append(run)
        clock = ends[-1] + sim.gap
    instances = [r.instance for r in runs]
    scores = score_instances(instances, corpus.tgt_lang, use_omnisteval=sim.use_omnisteval)
    st = dict(tr.stats)
    st["prefill_saved"] = st["reused_tokens"] / st["prompt_tokens"] if st["prompt_tokens"] else None
    st["compute_s"] = sum(u.compute_s for r in runs for u in r.updates)
    scores.update({
        "policy": policy, "param": config.param(policy), "corpus": corpus.name, "n_pairs": len(pairs),
        "src_lang": corpus.src_lang, "tgt_lang": corpus.tgt_lang, "model": lm.facts.model_id,
        "heads": tr.heads_label, "pace_s": None if word_times is not None else sim.pace,
        "holdback_s": config.holdback, "n_empty": sum(not i.prediction.strip() for i in instances),
        "translator": _config_dict(config), "stats": st,
    })
    result = SimulationResult(policy, config.param(policy), instances, scores, runs, st)
    if out_dir is not None:
        write_simulation(result, out_dir)
    return result


def _config_dict(config: TranslatorConfig) -> dict:
    return asdict(config)


def write_simulation(result: SimulationResult, out_dir: str | Path) -> Path:
    """Write instances.log, scores.json and decisions.jsonl into `out_dir` (each file atomically)."""
    out = Path(out_dir)
    write_instances(out / "instances.log", result.instances)
    write_scores(out / "scores.json", result.scores)
    with atomic_open(out / "decisions.jsonl") as f:
        for run in result.runs:
            for u in run.updates:
                rec = {"index": run.instance.index, "time": round(u.time - run.start, 6), "final": u.final,
                       "n_source": u.n_source, "n_accessible": u.n_accessible, "new_text": u.new_text,
                       "emitted_units": u.emitted_units, "compute_s": round(u.compute_s, 6),
                       **u.decision_trace.to_dict()}
                f.write(json.dumps(rec, ensure_ascii=False, default=_json_default) + "\n")
    return out


def _json_default(o):
    if isinstance(o, np.integer | np.floating):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ----------------------------------------------------------------------------- sweeps


def _with_param(config: TranslatorConfig, policy: str, value) -> TranslatorConfig:
    if policy == "alignatt":
        return replace(config, alignatt=replace(config.alignatt, border=int(value)))
    if policy == "wait-k":
        return replace(config, wait_k=int(value))
    if policy == "cut-last":
        return replace(config, cut_last=int(value))
    return config


def quality_latency(
    lm: LoadedModel,
    corpus: Corpus,
    heads: Sequence[Head] | HeadSet | None = None,
    grid: dict[str, Sequence] | None = None,
    config: TranslatorConfig | None = None,
    sim: SimulationConfig | None = None,
    *,
    layout: PromptLayout | None = None,
    word_times: dict[str, list[float]] | None = None,
    out_csv: str | Path | None = None,
    out_dir: str | Path | None = None,
    memo_size: int = 20000,
) -> pd.DataFrame:
    """Run every policy over its parameter range; one row per (policy, param) — the table viz.quality_latency plots.

    Drafts are remembered per prompt across runs (same model and heads), so the runs share their model calls;
    a remembered draft is charged the wall time it first took, keeping computation-aware latency honest.
    """
    grid = grid if grid is not None else DEFAULT_GRID
    config = config or TranslatorConfig()
    unknown = [p for p in grid if p not in POLICIES]
    if unknown:
        raise AlignheadsError(f"unknown policies {unknown}; choose from {', '.join(POLICIES)}")
    memo: OrderedDict = OrderedDict()
    config = replace(config, memo_size=memo_size)
    rows = []
    for policy, values in grid.items():
        for value in values:
            cfg = _with_param(config, policy, value)
            sub = Path(out_dir) / f"{policy}_{value}" if out_dir is not None else None
            res = simulate(lm, corpus, heads if policy == "alignatt" else _heads_or_none(heads), policy, cfg, sim,
                           layout=layout, word_times=word_times, out_dir=sub, memo=memo)
            s = res.scores
            rows.append({"policy": policy, "param": value, **{c: s.get(c) for c in CURVE_COLUMNS[2:10]},
                         "latency_unit": s["latency_unit"], "n_instances": s["n_instances"], "n_empty": s["n_empty"],
                         "compute_s": res.stats["compute_s"], "prefill_saved": res.stats["prefill_saved"]})
    table = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    if out_csv is not None:
        with atomic_open(out_csv) as f:
            table.to_csv(f, index=False)
    return table


def matched_latency(curves: pd.DataFrame, policy: str = "alignatt", baseline: str = "cut-last",
                    latency: str = "laal_cu", quality: str = "bleu") -> pd.DataFrame:
    """For each point of `policy`, the baseline's quality at the same latency (linear interpolation along the
    baseline's points sorted by latency; NaN outside its range) and the difference."""
    a = curves[curves["policy"] == policy].dropna(subset=[latency, quality])
    b = curves[curves["policy"] == baseline].dropna(subset=[latency, quality]).sort_values(latency)
    rows = []
    for r in a.itertuples():
        x = getattr(r, latency)
        inside = len(b) >= 1 and b[latency].min() <= x <= b[latency].max()
        q = float(np.interp(x, b[latency], b[quality])) if inside else math.nan
        rows.append({"param": r.param, latency: x, quality: getattr(r, quality), f"{baseline}_{quality}": q,
                     "delta": getattr(r, quality) - q if inside else math.nan})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- oracle policy evaluation


def _needed(pair: SentencePair) -> dict[int, int]:
    """Per gold-aligned target word: how many source words must be available (last aligned source word + 1)."""
    need: dict[int, int] = {}
    for s, t in pair.possible:
        need[t] = max(need.get(t, 0), s + 1)
    return need


def _emission_steps(attn_or_pos, token_word: list[int], n_words: int, n_src: int, cfg: AlignAttConfig,
                    fixed: bool, steps: Sequence[int]) -> list[int]:
    """When (number of accessible source words) each target word is emitted, scanning a teacher-forced draft.

    `attn_or_pos` is, per step in `steps`, the attention [heads, tokens, src] (or, with `fixed`, one array of
    positions used at every step). The draft of a step is the next `max_draft` tokens after the emitted ones.
    """
    word_tokens: dict[int, list[int]] = {}
    for t, w in enumerate(token_word):
        word_tokens.setdefault(w, []).append(t)
    emitted_at = [n_src] * n_words  # words left at the end go out with the final update
    u = 0  # first target word not emitted yet
    last_pos = None
    for k, n in enumerate(steps):
        if u >= n_words:
            break
        first = word_tokens[u][0]
        window = list(range(first, min(first + cfg.max_draft, len(token_word))))
        if fixed:
            positions = np.asarray(attn_or_pos)[window]
        else:
            positions, _ = alignatt_positions(attn_or_pos[k][:, window], cfg)
        keep, _, _ = alignatt_cut(positions, n, cfg, last_pos)
        kept = set(window[:keep])
        while u < n_words and set(word_tokens[u]) <= kept:
            emitted_at[u] = n
            last_pos = int(positions[window.index(word_tokens[u][-1])])
            u += 1
    return emitted_at


def _variant_stats(emitted: list[list[int]], needs: list[dict[int, int]], n_srcs: list[int]) -> dict[str, Any]:
    premature, over, held, total = 0, [], 0, 0
    for em, need, n_src in zip(emitted, needs, n_srcs, strict=True):
        for j, req in need.items():
            total += 1
            if em[j] < req:
                premature += 1
            else:
                over.append(em[j] - req)
                held += em[j] == n_src and req < n_src
    return {
        "premature_rate": premature / total if total else None,
        "overwait_mean": float(np.mean(over)) if over else None,
        "overwait_median": float(np.median(over)) if over else None,
        "held_to_final_rate": held / total if total else None,
        "n_words": total,
    }


@dataclass
class _OraclePair:
    """Teacher-forced attention of one pair at every source prefix, for the oracle."""

    n_src: int
    n_tgt: int
    need: dict[int, int]
    token_word: list[int]
    steps: list[int]
    selected: list[np.ndarray]  # per step [heads, target tokens, source words]
    mean: list[np.ndarray]  # per step [1, target tokens, source words]


def _oracle_pair(lm: LoadedModel, layout: PromptLayout, pair: SentencePair, selected: list[Head],
                 show_future: bool) -> _OraclePair:
    from .scoring import pair_rows

    L, H = lm.facts.num_layers, lm.facts.num_heads
    N, M = len(pair.src_words), len(pair.tgt_words)
    steps = list(range(1, N))
    token_word: list[int] = []
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    sel_steps, mean_steps = [], []
    for n in steps:
        shown = N if show_future else n
        if shown not in cache:
            r = render(layout, lm.tokenizer, pair.src_words[:shown], target_words=pair.tgt_words)
            tokens = sorted({t for w in r.tgt_tokens for t in w})
            word_of = {t: w for w, toks in enumerate(r.tgt_tokens) for t in toks}
            if token_word and [word_of[t] for t in tokens] != token_word:
                raise AlignheadsError(f"pair {pair.id!r}: the reference tokenises differently after "
                                      f"{shown} source words; the oracle needs one target tokenisation")
            token_word = [word_of[t] for t in tokens]
            positions = sorted(set(tokens) | {t - 1 for t in tokens})
            index = {p: i for i, p in enumerate(positions)}
            rows = pair_rows(lm, r, positions)  # [L, H, n_pos, T], one forward
            words = pool_source_words(rows, r.src_tokens).numpy()  # [L, H, n_pos, S]
            own = [index[t] for t in tokens]
            emit = [index[t - 1] for t in tokens]
            sel = np.stack([words[h.layer, h.head, own if h.query == "own" else emit] for h in selected])
            mean = words[:, :, own].reshape(L * H, len(tokens), -1).mean(0, keepdims=True)
            cache[shown] = (sel, mean)
        sel_steps.append(cache[shown][0])
        mean_steps.append(cache[shown][1])
    if not token_word:  # a one-word source has no step before the final update
        token_word = [j for j in range(M)]
    return _OraclePair(N, M, _needed(pair), token_word, steps, sel_steps, mean_steps)


def _oracle_stats(data: list[_OraclePair], cfg: AlignAttConfig) -> dict[str, dict[str, Any]]:
    emitted: dict[str, list[list[int]]] = {"selected": [], "all_heads_mean": [], "diagonal": []}
    for d in data:
        if not d.steps:
            for v in emitted:
                emitted[v].append([d.n_src] * d.n_tgt)
            continue
        emitted["selected"].append(_emission_steps(d.selected, d.token_word, d.n_tgt, d.n_src, cfg, False, d.steps))
        emitted["all_heads_mean"].append(_emission_steps(d.mean, d.token_word, d.n_tgt, d.n_src, cfg, False, d.steps))
        diag = diagonal_positions(d.token_word, d.n_src, d.n_tgt)
        emitted["diagonal"].append(_emission_steps(diag, d.token_word, d.n_tgt, d.n_src, cfg, True, d.steps))
    needs, n_srcs = [d.need for d in data], [d.n_src for d in data]
    return {v: _variant_stats(e, needs, n_srcs) for v, e in emitted.items()}


def policy_eval(
    lm: LoadedModel,
    corpus: Corpus,
    heads: Sequence[Head] | HeadSet,
    cfg: AlignAttConfig | Sequence[AlignAttConfig] | None = None,
    *,
    layout: PromptLayout | None = None,
    limit: int | None = None,
    show_future: bool = False,
    top_k: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Oracle evaluation of AlignAtt on gold alignments, for the selected heads, the all-head mean and the diagonal.

    For each pair and each source prefix n = 1 … N−1 the prompt holds the source prefix (or, with `show_future`,
    the whole source with only the first n words accessible) and the reference as the teacher-forced draft; the
    rule scans the next `max_draft` tokens after the words already emitted. A target word is premature when it is
    emitted with fewer source words available than its last gold-aligned source word needs; over-wait is how many
    source words later than needed it went out. Returns one JSON-able dict; given a list of configs, the forwards
    are shared and the dict holds one entry per config under "runs".
    """
    cfgs = [cfg or AlignAttConfig()] if cfg is None or isinstance(cfg, AlignAttConfig) else list(cfg)
    layout = layout or PromptLayout.for_tokenizer(lm.tokenizer, corpus.src_lang, corpus.tgt_lang)
    selected = _as_heads(heads, lm, layout, top_k)
    if not selected:
        raise AlignheadsError("policy_eval needs at least one head")
    pairs = list(corpus)[:limit] if limit else list(corpus)
    t0 = time.perf_counter()
    data = [_oracle_pair(lm, layout, p, selected, show_future)
            for p in tqdm(pairs, desc="policy-eval", unit="pair", disable=not progress)]
    out: dict[str, Any] = {
        "model": lm.facts.model_id,
        "corpus": corpus.name,
        "src_lang": corpus.src_lang,
        "tgt_lang": corpus.tgt_lang,
        "n_pairs": len(pairs),
        "heads": [str(h) for h in selected],
        "show_future": show_future,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    runs = [{"config": asdict(c), **_oracle_stats(data, c)} for c in cfgs]
    if cfg is None or isinstance(cfg, AlignAttConfig):
        return {**out, **runs[0]}
    return {**out, "runs": runs}


# ----------------------------------------------------------------------------- CLI helpers (wired by alignheads.cli)


def add_translator_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by `simulate` and `policy-eval`: model, heads, data, AlignAtt rule."""
    p.add_argument("--model", default="embedded", help="model spec: embedded, tiny-gemma3, a hub id or a directory")
    p.add_argument("--heads", help="head-set JSON file (required for the alignatt policy)")
    p.add_argument("--top-k", type=int, default=None, help="use only the first k heads of the head-set file")
    p.add_argument("--data", required=True, help="word-aligned corpus (alignheads TSV, XL-WA, TALP, pharaoh)")
    p.add_argument("--limit", type=int, default=None, help="first n pairs only")
    p.add_argument("--border", type=int, default=1, help="AlignAtt border b: stop when ŝ >= N_accessible + b")
    p.add_argument("--rewind", type=int, default=8, help="AlignAtt rewind gate in source words (0 = off)")
    p.add_argument("--no-z-score", action="store_true", help="do not z-score attention over draft tokens")
    p.add_argument("--median-width", type=int, default=7, help="median filter width along the source (1 = off)")
    p.add_argument("--max-draft", type=int, default=16, help="draft tokens per update")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")


def add_simulate_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of `alignheads simulate` (call `simulate_main(args)`)."""
    add_translator_arguments(p)
    p.add_argument("--policy", choices=POLICIES, default="alignatt")
    p.add_argument("--wait-k", type=int, default=3, help="wait-k: source words before the first target unit")
    p.add_argument("--cut-last", type=int, default=2, help="cut-last-x: draft words withheld")
    p.add_argument("--holdback", type=float, default=0.0, help="seconds before a word counts as accessible")
    p.add_argument("--final-max-tokens", type=int, default=256, help="length cap of a sentence's final translation")
    p.add_argument("--pace", type=float, default=0.4, help="seconds per source word (without --word-times)")
    p.add_argument("--word-times", help='JSONL of {"id", "end_times"} (seconds from each sentence start)')
    p.add_argument("--unit", choices=UNITS, default="word", help="latency unit: source words or ms")
    p.add_argument("--no-omnisteval", action="store_true", help="score latency with alignheads' own code")
    p.add_argument("--sweep", action="store_true",
                   help="run every policy over its parameter range and write curves.csv instead")
    p.add_argument("--out", required=True, help="output directory")


def _load(args):
    from .data import read_corpus
    from .headset import load_headset
    from .models import load_model

    lm = load_model(args.model, device=args.device)
    corpus = read_corpus(args.data)
    heads = load_headset(args.heads) if args.heads else None
    align = AlignAttConfig(border=args.border, rewind=args.rewind, z_score=not args.no_z_score,
                           median_width=args.median_width, max_draft=args.max_draft)
    return lm, corpus, heads, align


def simulate_main(args: argparse.Namespace) -> dict[str, Any]:
    """Run `alignheads simulate`; returns the scores (or, with --sweep, {"curves": path}). Writes into --out."""
    lm, corpus, heads, align = _load(args)
    config = TranslatorConfig(alignatt=align, wait_k=args.wait_k, cut_last=args.cut_last, holdback=args.holdback,
                              top_k=args.top_k, final_max_tokens=args.final_max_tokens)
    sim = SimulationConfig(pace=args.pace, unit=args.unit, limit=args.limit, use_omnisteval=not args.no_omnisteval)
    times = read_word_times(args.word_times) if args.word_times else None
    if args.sweep:
        grid = dict(DEFAULT_GRID)
        if heads is None:
            grid.pop("alignatt")
        out = Path(args.out)
        table = quality_latency(lm, corpus, heads, grid, config, sim, word_times=times, out_csv=out / "curves.csv",
                                out_dir=out)
        return {"curves": str(out / "curves.csv"), "rows": len(table)}
    if args.policy == "alignatt" and heads is None:
        raise AlignheadsError("--policy alignatt needs --heads FILE")
    return simulate(lm, corpus, heads, args.policy, config, sim, word_times=times, out_dir=args.out).scores


def add_policy_eval_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of `alignheads policy-eval` (call `policy_eval_main(args)`; it prints one JSON object)."""
    add_translator_arguments(p)
    p.add_argument("--show-future", action="store_true",
                   help="prompt shows the whole source; only the revealed prefix counts as accessible")
    p.add_argument("--out", default=None, help="also write the JSON result to this file")


def policy_eval_main(args: argparse.Namespace) -> dict[str, Any]:
    """Run `alignheads policy-eval`; returns the result dict (and writes it to --out when given)."""
    from .fileio import write_json

    lm, corpus, heads, align = _load(args)
    if heads is None:
        raise AlignheadsError("policy-eval needs --heads FILE")
    result = policy_eval(lm, corpus, heads, align, limit=args.limit, show_future=args.show_future, top_k=args.top_k)
    if args.out:
        write_json(Path(args.out), result)
    return result
