"""The paper's figures for one model, from the shipped data: `alignheads figures [--fast] [--out figures/]`.

Per direction (en-de, en-it, en-zh) heads are calibrated on the `dev` split and evaluated on `test`
(never the other way round). Figures written to the output folder:

- `ts_heatmap_<dir>.png`: layer x head Translation Score, top-k marked, KV-shared layers hatched;
- `shared_kernel.png`: the top-k heads (TS > threshold) of every direction and their intersections
  (the published Gemma-4 heads join in when the model is Gemma-4-E4B-it);
- `stability_<dir>.png`: TS of every head on two seeded halves of the calibration data;
- `attention_<dir>.png`: the best head's word-level attention on one calibration pair, gold overlaid;
- `headset_ablation.png`: ensemble AER of the first k heads (by calibration TS) vs k, calibration and
  held-out, with the diagonal and mean-of-all-heads baselines;
- from the saved results of `benchmarks/bench_policies.py` (`benchmarks/results/policies.json`; the
  benchmark takes hours, `make figures` only reads it), per benchmark dataset:
  `quality_latency_<dataset>.png` (BLEU vs LAAL in source words, all four policies),
  `policy_trace_<dataset>.png` (one sentence's emissions against the source available) and
  `alignatt_decisions_<dataset>.png` (where the heads pointed: every draft token's aligned source word
  against the border, and what the policy did with it);
- `paper_heads.png`: the paper's head figure, Gemma-4-E4B-it's mean TS en->{de, it, zh} from the authors'
  published `ts_matrix`, the registry's shared set outlined and the KV-shared block L24-L41 hatched, beside the
  same view of the model run here (its heads in every direction's top-k outlined);
- `aligners.png`: diagonal / all-head mean / top-k by TS / greedy ensemble / learned weights / SimAlign,
  fitted on the calibration split, AER on the held-out split;
- `head_depth.png`: where the heads sit, this model's ranking beside the published Gemma-4 one by relative depth;
- `quality_latency_<dataset>.png` also for the held-out test of `benchmarks/bench_heldout.py`
  (`benchmarks/results/heldout.json`, same shape as `policies.json`; skipped when absent);
- `readiness_<dir>.png`: from `benchmarks/bench_readiness.py`'s summary (`benchmarks/results/readiness.json`), every
  head's readiness AUC in the prefix condition on held-apart pairs, the ablation's AUCs in the title.

`manifest.json` beside them records the model, data hashes, settings, selected heads and the
numbers behind the ablation and quality-latency plots. Notebook 05 calls the same functions;
`alignheads figures` (`make figures`) runs them all and is the one writer of these files.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .. import __version__
from ..base.errors import AlignheadsError
from ..base.fileio import write_json
from ..base.languages import parse_direction
from ..base.paths import GOLD_DIR, GOLD_DIRECTIONS, HELDOUT_RESULTS, POLICY_RESULTS, READINESS_RESULTS
from ..corpus.formats import read_corpus
from ..corpus.pairs import Corpus
from ..heads.calibrate import calibrate
from ..heads.ensemble import ensemble_metrics
from ..heads.headset import GEMMA4_E4B_ID, GEMMA4_E4B_SHAPE, Head, HeadSet
from ..heads.registry import PUBLISHED, SHARED, vendored_headset
from ..heads.scoring import HeadScores, ScoreConfig, score_heads
from ..heads.selection import Selection, SelectionConfig, topk_by_ts
from ..model.loader import LoadedModel, ModelFacts, load_model
from ..model.prompts import PromptLayout
from . import viz
from .analysis import attention_figure, example_pair_index, split_tables

DIRECTIONS = GOLD_DIRECTIONS
DATA_DIR = GOLD_DIR
QL_GRID: dict[str, list] = {"alignatt": [1, 0, -1, -2], "wait-k": [1, 3, 5], "cut-last": [0, 2, 4]}
QL_GRID_FAST: dict[str, list] = {"alignatt": [1, -1], "wait-k": [1, 3], "cut-last": [0, 2]}


@dataclass
class FigureConfig:
    """What `make_figures` computes; `fast()` gives the few-pair variant CI and quick looks use."""

    model: str = "embedded"
    directions: tuple[str, ...] = DIRECTIONS
    data_dir: Path = DATA_DIR
    calib_split: str = "dev"
    test_split: str = "test"
    limit: int | None = None  # pairs per corpus (None: all)
    k: int = 8  # top-k for heatmaps, the shared kernel and the stability plot
    threshold: float = 0.1  # a head counts when ts > threshold (paper)
    ks: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16)
    selection: Literal["greedy", "topk"] = "greedy"  # how the head set the translator uses is chosen
    seed: int = 0
    example_pair: str | None = None  # id of the pair the attention figures show (default: picked by length)
    results: Path | None = POLICY_RESULTS  # bench_policies' summary; None: no quality-latency / trace figures
    readiness: Path | None = READINESS_RESULTS  # bench_readiness' summary; None (or absent): no readiness maps
    heldout: Path | None = HELDOUT_RESULTS  # bench_heldout's summary; None (or absent): no held-out curve
    progress: bool = True

    @classmethod
    def fast(cls, **kw) -> FigureConfig:
        """A quick variant: 4 pairs per corpus, fewer k."""
        return cls(**{"limit": 4, "ks": (1, 2, 4, 8), **kw})


@dataclass
class DirectionRun:
    """One direction: calibration corpus and scores, the calibrated head set, held-out corpus and scores."""

    name: str
    calib: Corpus
    scores: HeadScores
    selection: Selection
    headset: HeadSet
    layout: PromptLayout
    test: Corpus | None = None
    test_scores: HeadScores | None = None


# ----------------------------------------------------------------------------- data and scoring


def load_direction(direction: str, split: str, data_dir: str | Path = DATA_DIR, limit: int | None = None) -> Corpus:
    """The shipped corpus `<data_dir>/<src>-<tgt>.<split>.tsv`, optionally its first `limit` pairs."""
    src, tgt = parse_direction(direction)
    path = Path(data_dir) / f"{src}-{tgt}.{split}.tsv"
    if not path.is_file():
        have = sorted(p.name for p in Path(data_dir).glob("*.tsv")) if Path(data_dir).is_dir() else []
        raise AlignheadsError(f"no corpus {path} for {direction} {split}; have {have or 'nothing there'}")
    corpus = read_corpus(path)
    return corpus.head(limit) if limit else corpus


def run_direction(lm: LoadedModel, direction: str, cfg: FigureConfig) -> DirectionRun:
    """Calibrate on the calibration split (score, select, head set), then score the held-out split."""
    calib = load_direction(direction, cfg.calib_split, cfg.data_dir, cfg.limit)
    layout = PromptLayout.for_tokenizer(lm.tokenizer, calib.src_lang, calib.tgt_lang)
    score_cfg = ScoreConfig(progress=cfg.progress)
    select_cfg = SelectionConfig(method=cfg.selection, k=cfg.k, threshold=cfg.threshold, seed=cfg.seed)
    scores, selection, headset = calibrate(lm, calib, layout, score_cfg, select_cfg)
    run = DirectionRun(direction, calib, scores, selection, headset, layout)
    if cfg.test_split:
        run.test = load_direction(direction, cfg.test_split, cfg.data_dir, cfg.limit)
        run.test_scores = score_heads(lm, run.test, layout, score_cfg)
    return run


def run_directions(lm: LoadedModel, cfg: FigureConfig) -> dict[str, DirectionRun]:
    """`run_direction` for every configured direction, in order."""
    return {d: run_direction(lm, d, cfg) for d in cfg.directions}


# ----------------------------------------------------------------------------- the paper's figures


def ts_heatmap(run: DirectionRun, facts: ModelFacts, k: int = 8, *, save: str | Path | None = None) -> Figure:
    """Layer x head TS at the target token itself (the paper's score), top-k marked, KV-shared layers hatched."""
    own = run.scores.heads[run.scores.heads["query"] == "own"]
    return viz.head_heatmap(own, "ts", top_k=k, kv_shared_layers=facts.kv_shared,
                            title=f"{facts.model_id} {run.name}: translation score, top {k}", save=save)


def kernel_sets(runs: Mapping[str, DirectionRun], k: int = 8, threshold: float = 0.1,
                facts: ModelFacts | None = None) -> dict[str, list[tuple[int, int]]]:
    """Top-k heads by calibration TS (ts > threshold) per direction, plus the published sets for this model."""
    sets = {name: [(h.layer, h.head) for h in topk_by_ts(run.scores, k, "own", threshold)]
            for name, run in runs.items()}
    if facts is not None:
        for (model_id, src, tgt), hs in PUBLISHED.items():
            if model_id.lower() == facts.model_id.lower() and f"{src}-{tgt}" in runs:
                sets[f"{src}-{tgt} (paper)"] = [(h.layer, h.head) for h in hs.heads]
    return sets


def shared_kernel(runs: Mapping[str, DirectionRun], facts: ModelFacts, k: int = 8, threshold: float = 0.1, *,
                  save: str | Path | None = None) -> Figure:
    """`viz.headset_overlap` of the directions' top-k heads: the heads every direction shares."""
    return viz.headset_overlap(kernel_sets(runs, k, threshold, facts), n_layers=facts.num_layers,
                               n_heads=facts.num_heads, title=f"{facts.model_id}: top-{k} heads across directions",
                               save=save)


def stability_figure(scores: HeadScores, k: int = 8, seed: int = 0, *, title: str | None = None,
                     save: str | Path | None = None) -> Figure:
    """TS (own) of every head on two seeded halves of the scored pairs, each half's top-k marked."""
    a, b = split_tables(scores, seed)
    shape = {"n_layers": scores.n_layers, "n_heads": scores.n_heads}
    return viz.stability_scatter(viz.score_matrix(a, "ts", "own", **shape), viz.score_matrix(b, "ts", "own", **shape),
                                 top_k=k, title=title, save=save)


def best_head(scores: HeadScores, query: str = "own") -> Head:
    """The head with the highest TS at `query`."""
    h = scores.heads[scores.heads["query"] == query].sort_values("ts", ascending=False).iloc[0]
    return Head(int(h["layer"]), int(h["head"]), query)


def attention_example(run: DirectionRun, pair_id: str | None = None, *, save: str | Path | None = None) -> Figure:
    """The best head's word-level attention on one calibration pair, gold overlaid."""
    head = best_head(run.scores)
    i = example_pair_index(run.scores, run.calib, pair_id)
    ts = float(run.scores.heads.query("layer == @head.layer and head == @head.head and query == 'own'").ts.iloc[0])
    return attention_figure(run.scores, run.calib, i, [head],
                            title=f"{run.name} {run.scores.pair_ids[i]}: best head {head} (TS {ts:.2f})", save=save)


def k_table(heads: Sequence[Head], splits: Mapping[str, tuple[HeadScores, Corpus]], ks: Sequence[int] | None = None,
            direction: str = "") -> pd.DataFrame:
    """Ensemble AER / precision / recall of the first k of `heads` (in their order) on each named split of scored
    pairs, for k in `ks` (default 1..len(heads)): how many of a head-set file's heads a reader should take."""
    heads = list(heads)
    ks = sorted({k for k in (ks or range(1, len(heads) + 1)) if 1 <= k <= len(heads)})
    rows = [{"direction": direction, "split": split, "k": k, "heads": " ".join(map(str, heads[:k])),
             **ensemble_metrics(scores, corpus, heads[:k])}
            for split, (scores, corpus) in splits.items() for k in ks]
    return pd.DataFrame(rows, columns=["direction", "split", "k", "heads", "aer", "precision", "recall"])


def ablation_table(runs: Mapping[str, DirectionRun], ks: Sequence[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`k_table` of every direction's heads ranked by calibration TS (all heads, no threshold), on the held-out
    and the calibration pairs; and the baselines (diagonal, mean of all heads) on the held-out pairs."""
    tables, base = [], []
    for name, run in runs.items():
        ranked = topk_by_ts(run.scores, max(ks), "own", threshold=-np.inf)
        splits = {"calibration": (run.scores, run.calib)}
        if run.test_scores is not None:
            splits = {"held-out": (run.test_scores, run.test), **splits}
        tables.append(k_table(ranked, splits, ks, name))
        split, (scores, _) = next(iter(splits.items()))
        base.append(baseline_table(scores, name, split))
    return pd.concat(tables, ignore_index=True), pd.concat(base, ignore_index=True)


def baseline_table(scores: HeadScores, direction: str = "", split: str = "", query: str = "own") -> pd.DataFrame:
    """The baselines' (diagonal, mean of all heads) AER / precision / recall, in `k_table`'s shape."""
    b = scores.baselines[scores.baselines["query"] == query]
    return pd.DataFrame({"direction": direction, "split": split, "name": b["kind"].to_numpy(),
                         "aer": b["aer"].to_numpy(), "precision": b["precision"].to_numpy(),
                         "recall": b["recall"].to_numpy()})


def best_k(table: pd.DataFrame, split: str = "calibration") -> int:
    """The smallest k with the lowest ensemble AER on `split` of a `k_table` (choose on calibration data)."""
    rows = table[table["split"] == split]
    if rows.empty:
        raise AlignheadsError(f"no {split!r} rows in the k table (splits: {sorted(set(table['split']))}); "
                              "was any head selected? (a head needs ts above the selection threshold)")
    return int(rows.sort_values(["aer", "k"]).iloc[0]["k"])


def ablation_figure(table: pd.DataFrame, baselines: pd.DataFrame | None = None, *,
                    save: str | Path | None = None) -> Figure:
    """`viz.headset_ablation` of an `ablation_table` (AER vs k)."""
    return viz.headset_ablation(table, "aer", baselines=baselines, save=save)


def quality_latency_seconds(lm: LoadedModel, corpus: Corpus, heads: HeadSet | Sequence[Head],
                            grid: Mapping[str, Sequence] | None = None, *, pace: float = 0.4,
                            limit: int | None = None, layout: PromptLayout | None = None,
                            progress: bool = True) -> pd.DataFrame:
    """`simulate.quality_latency` on a text stream at `pace` s/word, with every latency column in seconds (the
    `viz.quality_latency` axis unit) instead of source words."""
    from ..simul.simulate import SimulationConfig
    from ..simul.sweep import quality_latency

    sim = SimulationConfig(pace=pace, limit=limit, unit="ms", progress=progress)
    curves = quality_latency(lm, corpus, heads, dict(grid or QL_GRID), sim=sim, layout=layout)
    latency = [c for c in curves.columns if c.endswith(("_cu", "_ca"))]
    curves[latency] = curves[latency].astype(float) / 1000.0
    return curves


def quality_latency_figure(curves: pd.DataFrame, name: str, *, unit: str = "s",
                           save: str | Path | None = None) -> Figure:
    """BLEU against computation-unaware LAAL (in `unit`: seconds, or source words), one line per policy."""
    n = int(curves["n_instances"].max()) if "n_instances" in curves and len(curves) else 0
    fig = viz.quality_latency(curves, latency="laal_cu", quality="bleu",
                              title=f"{name}: BLEU vs LAAL, {n} held-out sentences as a text stream")
    fig.axes[0].set_xlabel(f"LAAL, computation-unaware ({unit})")
    if save is not None:
        viz.save_figure(fig, save)
    return fig


# ----------------------------------------------------------------------------- bench_policies results


def load_policy_results(path: str | Path = POLICY_RESULTS) -> dict[str, Any]:
    """The summary `benchmarks/bench_policies.py` writes (curves, significance, oracle, traced sentence)."""
    path = Path(path)
    if not path.is_file():
        raise AlignheadsError(f"{path} not found: run `python benchmarks/bench_policies.py` (hours) first; "
                              "its results are committed with the repository")
    return json.loads(path.read_text(encoding="utf-8"))


def readiness_figure(part: Mapping[str, Any], direction: str) -> Figure:
    """Every head's readiness AUC on the held-apart pairs (one direction of `bench_readiness`' summary), with the
    ablation's answer in the title."""
    rows = [{"query": q, "layer": layer, "head": head, "readiness_auc": auc}
            for q, matrix in part["auc_matrix_evaluation"].items()
            for layer, row in enumerate(matrix) for head, auc in enumerate(row)]
    ab = part["ablation"]
    return viz.head_heatmap(pd.DataFrame(rows), "readiness_auc", top_k=4, lower_is_better=False,
                            title=f"{direction}: readiness AUC per head, prefix condition, held-apart pairs "
                                  f"(heads + position {ab['heads+position']['auc']:.3f}, "
                                  f"position {ab['position']['auc']:.3f})")


def benchmark_curves(results: Mapping[str, Any], dataset: str) -> pd.DataFrame:
    """One dataset's quality-latency rows (policy, param, bleu, chrf, laal_cu, stop_share, ...)."""
    if dataset not in results["datasets"]:
        raise AlignheadsError(f"no benchmark results for {dataset!r}; have {sorted(results['datasets'])}")
    return pd.DataFrame(results["datasets"][dataset]["curves"])


def traced_sentence(results: Mapping[str, Any], dataset: str, base: str | Path = POLICY_RESULTS.parent
                    ) -> tuple[dict, int, int]:
    """(record, sentence index, border) of the sentence the benchmark picked for the policy-trace figures
    (its record file is named relative to `base`, the folder of the results summary)."""
    from ..simul.sweep import read_json

    traced = results["datasets"][dataset].get("traced")
    record = read_json(Path(base) / traced["file"]) if traced else None
    if record is None:
        raise AlignheadsError(f"{dataset}: the benchmark results name no traced AlignAtt sentence (or its file "
                              "is missing)")
    return record, traced["index"], traced["border"]


def policy_trace_figures(record: dict, index: int, border: int, name: str) -> tuple[Figure, Figure]:
    """A traced sentence's emissions against the source (`viz.policy_trace`) and where the heads pointed
    (`viz.alignatt_decisions`)."""
    from ..simul.comparison import setting_label, trace_frames

    emissions, tokens = trace_frames(record, index)
    label = setting_label(record["policy"], record["param"], record["holdback"])
    trace = viz.policy_trace(emissions, title=f"{name} sentence {index}: {label} emissions (0.4 s/word)")
    decisions = viz.alignatt_decisions(tokens, border=border,
                                       title=f"{name} sentence {index}: {label}, aligned source word per draft token")
    return trace, decisions


# ----------------------------------------------------------------------------- the authors' heads beside ours


def published_mean_ts(directions: Sequence[str] = DIRECTIONS) -> np.ndarray:
    """Gemma-4-E4B-it's TS matrix averaged over directions, from the authors' vendored head files."""
    return np.mean([vendored_headset(GEMMA4_E4B_ID, *parse_direction(d)).scores["ts"]["own"] for d in directions],
                   axis=0)


def mean_ts(runs: Mapping[str, DirectionRun]) -> np.ndarray:
    """This model's calibration TS (own position) averaged over the runs' directions."""
    return np.mean([run.scores.matrix("ts", "own") for run in runs.values()], axis=0)


def paper_heads_figure(runs: Mapping[str, DirectionRun], facts: ModelFacts, k: int = 8, threshold: float = 0.1, *,
                       save: str | Path | None = None) -> Figure:
    """The paper's head figure (published Gemma-4-E4B-it, registry's shared set, KV-shared block) beside this model's
    mean TS with the heads in every direction's top-k outlined."""
    tops = [set(v) for v in kernel_sets(runs, k, threshold).values()]
    gemma = f"{GEMMA4_E4B_ID} (published ts_matrix)"
    ours = f"{facts.model_id} (this run, {', '.join(runs)})"
    return viz.head_sets_side_by_side(
        {gemma: published_mean_ts(), ours: mean_ts(runs)},
        {gemma: SHARED, ours: sorted(set.intersection(*tops)) if tops else []},
        {gemma: list(GEMMA4_E4B_SHAPE["kv_shared_layers"]), ours: list(facts.kv_shared)},
        title="MT alignment heads, en→{de, it, zh} mean TS", save=save)


def head_depth_figure(runs: Mapping[str, DirectionRun], facts: ModelFacts, k: int = 8, *,
                      save: str | Path | None = None) -> Figure:
    """`viz.depth_profile` of the published Gemma-4-E4B-it mean TS and this model's."""
    return viz.depth_profile({f"{GEMMA4_E4B_ID} (published)": published_mean_ts(), facts.model_id: mean_ts(runs)},
                             top_k=k, label="mean TS (en→de, it, zh)", save=save)


def aligner_table(runs: Mapping[str, DirectionRun], k: int = 4, threshold: float = 0.1,
                  simalign: bool = True) -> pd.DataFrame:
    """Per direction, AER on the held-out split of aligners fitted on the calibration split only
    (`heads.aligners.compare_aligners`), and SimAlign (no fitting)."""
    from ..heads.aligners import METRICS, compare_aligners

    rows = []
    for name, run in runs.items():
        if run.test_scores is None:
            raise AlignheadsError(f"{name}: the aligner comparison needs a held-out split (test_split)")
        found = compare_aligners([(run.scores, run.calib)], (run.test_scores, run.test), ks=(k,), threshold=threshold)
        if simalign:
            from ..corpus.encoder import EncoderUnavailable
            from ..corpus.silver import compare_aligner

            try:
                found.append({"aligner": "SimAlign", **compare_aligner(run.test, progress=False)})
            except EncoderUnavailable:
                pass
        rows += [{"direction": name, "aligner": f["aligner"], **{c: float(f[c]) for c in METRICS},
                  "note": f.get("note", "")} for f in found]
    return pd.DataFrame(rows)


def make_figures(cfg: FigureConfig, out: str | Path = "figures", lm: LoadedModel | None = None, *,
                 command: str | None = None) -> dict[str, Any]:
    """Compute and write every figure of the module docstring into `out`; return (and write) the manifest."""
    out = Path(out)
    t0 = time.perf_counter()
    for d in cfg.directions:  # fail on missing data before spending time on the model
        for split in (cfg.calib_split, cfg.test_split):
            if split:
                load_direction(d, split, cfg.data_dir)
    results = load_policy_results(cfg.results) if cfg.results else None
    lm = lm or load_model(cfg.model)
    runs = run_directions(lm, cfg)
    written: dict[str, str] = {}

    def save(name: str, fig: Figure) -> None:
        viz.save_figure(fig, out / name)
        titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
        written[name] = fig.get_suptitle() or (titles[0] if titles else "")

    facts = lm.facts
    for name, run in runs.items():
        save(f"ts_heatmap_{name}.png", ts_heatmap(run, facts, cfg.k))
        save(f"stability_{name}.png", stability_figure(run.scores, cfg.k, cfg.seed,
                                                       title=f"{name}: half-split stability of TS"))
        save(f"attention_{name}.png", attention_example(run, cfg.example_pair))
    save("shared_kernel.png", shared_kernel(runs, facts, cfg.k, cfg.threshold))
    table, baselines = ablation_table(runs, cfg.ks)
    save("headset_ablation.png", ablation_figure(table, baselines[baselines["name"] == "diagonal"]))
    save("paper_heads.png", paper_heads_figure(runs, facts, cfg.k, cfg.threshold))
    save("head_depth.png", head_depth_figure(runs, facts, cfg.k))
    aligners = aligner_table(runs, threshold=cfg.threshold) if cfg.test_split else pd.DataFrame()
    if not aligners.empty:  # rows an aligner could not fit carry a note in the manifest, not a bar
        save("aligners.png", viz.aligner_comparison(aligners.dropna(subset=["aer"])))
    curves: dict[str, list] = {}
    heldout = load_policy_results(cfg.heldout) if cfg.heldout and Path(cfg.heldout).is_file() else None
    for summary, traced in ((results, True), (heldout, False)):  # the held-out test traces no AlignAtt sentence
        for name in (summary or {"datasets": {}})["datasets"]:
            c = benchmark_curves(summary, name)
            curves[name] = c.to_dict("records")
            save(f"quality_latency_{name}.png", quality_latency_figure(c, name, unit=summary["latency_unit"]))
            if traced:
                trace, decisions = policy_trace_figures(*traced_sentence(summary, name, Path(cfg.results).parent),
                                                        name)
                save(f"policy_trace_{name}.png", trace)
                save(f"alignatt_decisions_{name}.png", decisions)
    if cfg.readiness and Path(cfg.readiness).is_file():
        for name, part in json.loads(Path(cfg.readiness).read_text(encoding="utf-8"))["directions"].items():
            save(f"readiness_{name}.png", readiness_figure(part, name))
    manifest = {
        "tool": {"name": "alignheads", "version": __version__},
        "command": command,
        "model": facts.to_dict(),
        "config": {k: (_display_path(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
        "data": {name: {"calibration": {"name": r.calib.name, "pairs": len(r.calib), "hash": r.calib.content_hash()},
                        "held_out": None if r.test is None else
                        {"name": r.test.name, "pairs": len(r.test), "hash": r.test.content_hash()}}
                 for name, r in runs.items()},
        "headsets": {name: {"selection": cfg.selection, "heads": [str(h) for h in r.headset.top()],
                            "promoted": r.headset.promoted,
                            "topk_by_ts": [str(h) for h in topk_by_ts(r.scores, cfg.k, "own", cfg.threshold)]}
                     for name, r in runs.items()},
        "ablation": table.to_dict("records"),
        "baselines": baselines.to_dict("records"),
        "aligners": aligners.to_dict("records"),
        "quality_latency": curves,
        "figures": written,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_json(out / "manifest.json", manifest)
    return manifest


def _display_path(path: Path) -> str:
    """`path` relative to the working directory when it lies inside it (manifests stay machine-independent)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)

