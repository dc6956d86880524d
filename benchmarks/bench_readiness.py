"""Do the heads know what has not been heard yet? Readiness on held-apart pairs, and the ablation (issue 21).

Per direction, heads are scored in the prefix condition (`alignheads.heads.readiness`: the prompt shows the first s
source words, a of them accessible, one word pending as with the cascade's hold-back; the reference forced as the
draft) on calibration pairs and, separately, on held-apart evaluation pairs that were never used to choose or fit:

- shipped en-de / en-it / en-zh: calibrate on the shipped dev set, evaluate on the shipped test set;
- XL-WA en-it dev (shared data): calibrate on the shipped en-it dev + test and the first authors' en-it pairs.

Reported on the evaluation cells: every head's readiness AUC (the best head, the head set's heads), the positional
baselines (the causal ŝ = round(j·ρ̂), ρ̂ from calibration; the length-oracle diagonal, which knows each sentence's
final lengths — reported, never the bar), and the learned border's three variants — heads only, position only,
heads + position — fitted on the calibration cells: AUC with a 95 % bootstrap interval over pairs, and the paired
bootstrap of the differences (heads + position − position; heads − position). The answer to the question is the
last line per direction. Results: benchmarks/results/readiness.json; per-direction readiness caches (npz, git-ignored)
under benchmarks/results/readiness/.

    python benchmarks/bench_readiness.py [--threads 1] [--directions en-de en-it en-zh xlwa-en-it]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, pin_threads, print_table, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "data" / "gold"
SHARED = ROOT.parent / "shared" / "data"
CACHE = RESULTS_DIR / "readiness"
PENDING = 1
K = 4  # border heads: the top-k by readiness AUC on the calibration cells
A4L_PAIRS = 48  # authors' en-it pairs added to the XL-WA calibration (readiness costs a forward per source word)
DIRECTIONS = {
    "en-de": ([GOLD / "en-de.dev.tsv"], GOLD / "en-de.test.tsv"),
    "en-it": ([GOLD / "en-it.dev.tsv"], GOLD / "en-it.test.tsv"),
    "en-zh": ([GOLD / "en-zh.dev.tsv"], GOLD / "en-zh.test.tsv"),
    "xlwa-en-it": ([GOLD / "en-it.dev.tsv", GOLD / "en-it.test.tsv",
                    SHARED / "a4l" / "word_alignments" / "word_alignments_en-it.json"],
                   SHARED / "gold" / "en-it.xlwa-dev.tsv"),
}


def corpora(name: str):
    """(calibration corpus, evaluation corpus) of a direction."""
    from alignheads.corpus.formats import read_corpus
    from alignheads.corpus.pairs import Corpus

    calib_paths, eval_path = DIRECTIONS[name]
    parts = [read_corpus(p) for p in calib_paths if p.is_file()]
    parts = [c.head(A4L_PAIRS) if c.pairs and c.pairs[0].sparse else c for c in parts]
    calib = Corpus([p for c in parts for p in c], parts[0].src_lang, parts[0].tgt_lang, name=f"{name}-calibration")
    return calib, read_corpus(eval_path)


def save(path: Path, r) -> None:
    """A Readiness's histograms and cells, compressed (np.savez)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cells = pd.concat([p.cells.assign(pair=i) for i, p in enumerate(r.pairs)], ignore_index=True)
    np.savez_compressed(path, hist=r.hist, queries=np.array(r.queries), pending=r.pending,
                        baselines=np.stack([r.baselines[k] for k in sorted(r.baselines)]),
                        baseline_names=np.array(sorted(r.baselines)), ids=np.array([p.pair_id for p in r.pairs]),
                        cells=cells.to_numpy(dtype=np.int64), columns=np.array(list(cells.columns), dtype=str),
                        margins=np.concatenate([p.margins for p in r.pairs]),
                        peaks=np.concatenate([p.peaks for p in r.pairs]))


def load(path: Path):
    from alignheads.heads.readiness import PrefixPair, Readiness

    z = np.load(path, allow_pickle=False)
    cells = pd.DataFrame(z["cells"], columns=list(z["columns"]))
    pairs = []
    for i, pid in enumerate(z["ids"]):
        sel = (cells["pair"] == i).to_numpy()
        pairs.append(PrefixPair(str(pid), cells[sel].drop(columns="pair").reset_index(drop=True), z["margins"][sel],
                                z["peaks"][sel]))
    return Readiness(z["hist"], dict(zip(map(str, z["baseline_names"]), z["baselines"], strict=True)),
                     tuple(map(str, z["queries"])), int(z["pending"]), pairs)


def readiness_of(lm, corpus, rho: float, path: Path):
    from alignheads.heads.readiness import score_readiness

    if path.is_file():
        return load(path), None
    t0 = time.perf_counter()
    r = score_readiness(lm, corpus, pending=PENDING, rho=rho)
    seconds = time.perf_counter() - t0
    save(path, r)
    return r, seconds


def paired_difference(models: dict, pairs, queries, a: str, b: str, n_boot: int = 1000, seed: int = 0) -> dict:
    """AUC(a) − AUC(b) on the same cells, with a paired bootstrap over pairs (95 % interval, two-sided p)."""
    from sklearn.metrics import roc_auc_score

    from alignheads.heads.border import cell_table, pair_resamples

    probs, y, owner = {}, None, None
    for name in (a, b):
        m = models[name]
        margins, peaks, pos, y = cell_table(pairs, m.heads, queries) if m.heads else cell_table(
            pairs, models["heads+position"].heads, queries)
        probs[name] = m.p_ready(m.design(margins, peaks, pos[:, 0], pos[:, 1], pos[:, 2]))
        owner = pos[:, 3].astype(int)
    diffs = np.array([roc_auc_score(y[idx], probs[a][idx]) - roc_auc_score(y[idx], probs[b][idx])
                      for idx in pair_resamples(owner, y, n_boot, seed)])
    delta = roc_auc_score(y, probs[a]) - roc_auc_score(y, probs[b])
    return {"delta": float(delta), "ci95": np.percentile(diffs, [2.5, 97.5]).tolist(),
            "p_value": float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))}


def direction(lm, name: str, n_boot: int) -> dict:
    from alignheads.heads.border import FEATURE_SETS, border_auc, fit_border
    from alignheads.heads.headset import Head, load_headset
    from alignheads.heads.readiness import histogram_auc, length_ratio

    calib, evaluate = corpora(name)
    rho = length_ratio(calib)
    rc, sc = readiness_of(lm, calib, rho, CACHE / f"{name}_calibration.npz")
    re_, se = readiness_of(lm, evaluate, rho, CACHE / f"{name}_evaluation.npz")
    q = rc.queries
    table = rc.table()
    top = table.dropna(subset=["readiness_auc"]).sort_values("readiness_auc", ascending=False).head(K)
    heads = [Head(int(r.layer), int(r.head), r.query) for r in top.itertuples()]
    models = {v: fit_border(rc.pairs, heads if v != "position" else [], q, rho, PENDING, v) for v in FEATURE_SETS}
    ablation = {v: border_auc(models[v], re_.pairs, q, n_boot=n_boot) for v in FEATURE_SETS}
    auc_eval = re_.auc
    headset_path = RESULTS_DIR / "policies" / name / "heads.json"
    headset = load_headset(headset_path).top() if headset_path.is_file() else []
    out = {
        "calibration": {"corpus": calib.name, "pairs": len(calib), "cells": int(rc.hist[0, 0, 0].sum()),
                        "rho": rho, "seconds": sc},
        "evaluation": {"corpus": evaluate.name, "pairs": len(evaluate), "cells": int(re_.hist[0, 0, 0].sum()),
                       "seconds": se},
        "border_heads": [str(h) for h in heads],
        "border_heads_evaluation_auc": {str(h): float(auc_eval[q.index(h.query), h.layer, h.head]) for h in heads},
        "best_head_evaluation": float(np.nanmax(auc_eval)),
        "headset_heads_evaluation_auc": {str(h): float(auc_eval[q.index(h.query), h.layer, h.head])
                                         for h in headset},
        "baselines_evaluation_auc": {k: float(histogram_auc(v)) for k, v in re_.baselines.items()},
        "ablation": ablation,
        "heads_plus_position_minus_position": paired_difference(models, re_.pairs, q, "heads+position", "position",
                                                                n_boot),
        "heads_minus_position": paired_difference(models, re_.pairs, q, "heads", "position", n_boot),
        "auc_matrix_calibration": {qq: np.round(rc.auc[i], 4).tolist() for i, qq in enumerate(q)},
        "auc_matrix_evaluation": {qq: np.round(auc_eval[i], 4).tolist() for i, qq in enumerate(q)},
    }
    d = out["heads_plus_position_minus_position"]
    out["answer"] = ("the heads add to position" if d["ci95"][0] > 0 else
                     "the heads add nothing significant over position") + (
        f": heads + position {ablation['heads+position']['auc']:.3f} vs position {ablation['position']['auc']:.3f} "
        f"(Δ {d['delta']:+.3f}, 95 % CI [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}])")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--directions", nargs="+", default=list(DIRECTIONS), choices=list(DIRECTIONS))
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args()
    pin_threads(args.threads)
    from alignheads.model.loader import load_model

    lm = load_model("embedded")
    results = {}
    for name in args.directions:
        if not DIRECTIONS[name][1].is_file():
            print(f"[{name}] skipped: {DIRECTIONS[name][1]} not found")
            continue
        results[name] = r = direction(lm, name, args.bootstrap)
        print_table([{"variant": v, "auc": round(a["auc"], 3), "ci95": [round(x, 3) for x in a["ci95"]]}
                     for v, a in r["ablation"].items()], f"{name}: learned border on held-apart cells")
        print(f"[{name}] best single head {r['best_head_evaluation']:.3f}; baselines "
              f"{ {k: round(v, 3) for k, v in r['baselines_evaluation_auc'].items()} }; {r['answer']}", flush=True)
    path = RESULTS_DIR / "readiness.json"
    import json

    old = json.loads(path.read_text()).get("directions", {}) if path.is_file() else {}
    print("wrote", write_result("readiness", {"pending": PENDING, "k": K, "directions": {**old, **results}}))


if __name__ == "__main__":
    main()
