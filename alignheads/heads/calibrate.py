"""End-to-end calibration (score -> select -> head-set file) and evaluation of a head set on held-out data."""

from __future__ import annotations

import warnings
from dataclasses import asdict

import numpy as np

from ..corpus.pairs import Corpus
from ..model.loader import LoadedModel
from ..model.prompts import PromptLayout
from .ensemble import ensemble_metrics
from .headset import Head, HeadEntry, HeadSet, HeadSetError
from .scoring import HeadScores, ScoreConfig, score_heads
from .selection import Selection, SelectionConfig, select_heads


def corpus_provenance(corpus: Corpus, scores: HeadScores) -> dict:
    """What a head set was calibrated on: files, content hash, sizes, silver-alignment provenance."""
    return {
        "corpus": corpus.name,
        "files": list(corpus.sources),
        "content_hash": corpus.content_hash(),
        "src_lang": corpus.src_lang,
        "tgt_lang": corpus.tgt_lang,
        "n_pairs_in_corpus": len(corpus),
        "n_pairs_scored": len(scores.pair_ids),
        "n_target_tokens": int(scores.heads["n_tokens"].iloc[0]) if len(scores.heads) else 0,
        "alignments": "silver" if corpus.meta.get("silver") else "gold",
        "silver": corpus.meta.get("silver"),
        "split": corpus.meta.get("split"),
        "shards": scores.shards,  # pair ids per scoring process (torchrun)
    }


def _baselines(scores: HeadScores) -> dict:
    b = scores.baselines
    cols = ["ts", "source_acc", "gold_mass", "aer", "precision", "recall"]
    return {f"{r.kind}@{r.query}": {c: float(getattr(r, c)) for c in cols} for r in b.itertuples()}


def build_headset(lm: LoadedModel, corpus: Corpus, layout: PromptLayout, scores: HeadScores,
                  selection: Selection, score_cfg: ScoreConfig) -> HeadSet:
    """Assemble the head-set record (selected heads sorted by ts, plus full provenance)."""
    if not selection.heads:
        best = scores.heads.sort_values("ts", ascending=False).iloc[0]
        raise HeadSetError(
            f"no head was selected on {len(scores.pair_ids)} pair(s): none has ts above the threshold "
            f"{selection.config.threshold} (best: {Head(int(best.layer), int(best['head']), best.query)} with ts "
            f"{best.ts:.3f}); "
            "lower the threshold (--threshold) or score more pairs"
        )
    entries = []
    for k, h in enumerate(selection.heads):
        r = scores.heads.query("layer == @h.layer and head == @h.head and query == @h.query").iloc[0]
        entries.append(HeadEntry(h.layer, h.head, ts=round(float(r.ts), 6), count=int(r.n_tokens), query=h.query,
                                 source_acc=round(float(r.source_acc), 6), aer=round(float(r.aer), 6),
                                 kv_shared=h.layer in lm.facts.kv_shared,
                                 weight=None if selection.weights is None else selection.weights[k]))
    entries.sort(key=lambda e: -(e.ts or 0.0))
    matrices = {
        col: {q: np.round(scores.matrix(col, q), 6).tolist() for q in scores.queries}
        for col in ("ts", "source_acc", "gold_mass", "aer")
    }
    f = lm.facts
    return HeadSet(
        heads=entries,
        model_id=f.model_id,
        revision=f.revision,
        model_fingerprint=f.fingerprint,
        src_lang=corpus.src_lang,
        tgt_lang=corpus.tgt_lang,
        num_layers=f.num_layers,
        num_heads=f.num_heads,
        num_kv_heads=list(f.num_kv_heads),
        kv_shared_layers=dict(f.kv_shared),
        layout=layout.to_dict(),
        chat_template_sha256=f.chat_template_sha256,
        score={"name": "ts", "threshold": selection.config.threshold, "selection": selection.config.method,
               "k": selection.config.k, "use_possible": score_cfg.use_possible, "queries": list(scores.queries),
               "config": asdict(selection.config)},
        scores=matrices,
        calibration={**corpus_provenance(corpus, scores), "dtype": lm.dtype},  # what the attention was computed in
        evaluation={"ensemble": ensemble_metrics(scores, corpus, selection.heads, weights=selection.weights),
                    "trajectory": selection.trajectory.to_dict("records"), "baselines": _baselines(scores)},
        stability=selection.stability,
        promoted=selection.promoted,
    )


def calibrate(lm: LoadedModel, corpus: Corpus, layout: PromptLayout | None = None,
              score_cfg: ScoreConfig | None = None, select_cfg: SelectionConfig | None = None):
    """Score every head on `corpus`, select heads and build the head set: returns (scores, selection, headset)."""
    score_cfg = score_cfg or ScoreConfig()
    select_cfg = select_cfg or SelectionConfig()
    layout = layout or PromptLayout.for_tokenizer(lm.tokenizer, corpus.src_lang, corpus.tgt_lang)
    scores = score_heads(lm, corpus, layout, score_cfg)
    selection = select_heads(scores, corpus, select_cfg)
    return scores, selection, build_headset(lm, corpus, layout, scores, selection, score_cfg)


def evaluate_headset(lm: LoadedModel, headset: HeadSet, corpus: Corpus, *, top_k: int | None = None,
                     layout: PromptLayout | None = None, score_cfg: ScoreConfig | None = None) -> dict:
    """Held-out evaluation of a head set's top-k ensemble, next to the diagonal and all-head baselines."""
    layout = layout or (PromptLayout.from_dict(headset.layout) if headset.layout else
                        PromptLayout.for_tokenizer(lm.tokenizer, corpus.src_lang, corpus.tgt_lang))
    headset.validate(lm.facts, layout)
    heads = headset.top(top_k)  # before scoring: a bad top-k or an empty set fails at once
    if headset.calibration.get("content_hash") == corpus.content_hash():
        warnings.warn("heads-eval runs on the very data the head set was calibrated on: scores are optimistic",
                      stacklevel=2)
    scores = score_heads(lm, corpus, layout, score_cfg or ScoreConfig())
    per_head = scores.heads.set_index(["layer", "head", "query"])
    rows = [per_head.loc[(h.layer, h.head, h.query)] for h in heads]
    base = _baselines(scores)
    return {
        "heads": [str(h) for h in heads],
        "n_pairs": len(scores.pair_ids),
        "ts_mean": float(np.mean([r.ts for r in rows])),
        "source_acc_mean": float(np.mean([r.source_acc for r in rows])),
        **ensemble_metrics(scores, corpus, heads, weights=headset.top_weights(top_k)),
        "diagonal": {k: base["diagonal@own"][k] for k in ("ts", "source_acc", "aer", "precision", "recall")},
        "mean_heads": base.get(f"mean_heads@{heads[0].query}"),
        "calibrated_on_same_data": headset.calibration.get("content_hash") == corpus.content_hash(),
    }


def calibrate_border(lm: LoadedModel, corpus: Corpus, headset: HeadSet, layout: PromptLayout | None = None, *,
                     scores: HeadScores | None = None, pending: int = 1, k: int = 4, variant: str = "heads+position",
                     progress: bool = True):
    """The prefix condition: score every head's readiness on `corpus` (`heads.readiness`), pick the k heads with the
    highest readiness AUC and fit the learned border on them (`heads.border`), stored in `headset` with how it was
    made (and, given the whole-source `scores`, added to them: `readiness_auc` column, `scores.readiness`)."""
    from .border import fit_border
    from .readiness import length_ratio, score_readiness

    layout = layout or PromptLayout.for_tokenizer(lm.tokenizer, corpus.src_lang, corpus.tgt_lang)
    queries = scores.queries if scores is not None else tuple(headset.score.get("queries", ("own", "emit")))
    readiness = score_readiness(lm, corpus, layout, queries=queries, pending=pending, progress=progress)
    table = readiness.table()
    if scores is not None:
        scores.readiness = readiness
        scores.table = scores.table.drop(columns="readiness_auc", errors="ignore").merge(
            table[["query", "layer", "head", "readiness_auc"]], on=["query", "layer", "head"], how="left")
    ranked = table.dropna(subset=["readiness_auc"]).sort_values("readiness_auc", ascending=False).head(k)
    heads = [Head(int(r.layer), int(r.head), r.query) for r in ranked.itertuples()]
    border = fit_border(readiness.pairs, heads, queries, length_ratio(corpus), pending, variant)
    border.provenance.update({"corpus": corpus.name, "content_hash": corpus.content_hash(), "dtype": lm.dtype,
                              "selected_by": f"top-{k} readiness AUC on the calibration pairs",
                              "baseline_auc": readiness.baseline_auc()})
    headset.border = border.to_dict()
    headset.scores["readiness_auc"] = {q: np.round(readiness.auc[i], 6).tolist()
                                       for i, q in enumerate(readiness.queries)}
    return border
