"""Calibrate heads on each shipped dev set (and half of each shared gold set), evaluate on held-out data.

Prints one table (best single head, exported ensemble, diagonal and all-head baselines) and writes
benchmarks/results/heads_report.json. `python benchmarks/heads_report.py [--threads 2] [--shared-limit N]`
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import pin_threads, print_table, write_result  # noqa: E402

from alignheads.corpus.formats import read_corpus  # noqa: E402
from alignheads.heads.calibrate import calibrate, evaluate_headset  # noqa: E402
from alignheads.heads.scoring import ScoreConfig  # noqa: E402
from alignheads.model.loader import load_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "gold"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shared-limit", type=int, help="use at most N pairs of each shared set")
    args = ap.parse_args()
    pin_threads(args.threads)
    warnings.simplefilter("ignore")
    lm = load_model("embedded")
    jobs = [(f"en-{t} shipped (dev -> test)", read_corpus(ROOT / "data" / "gold" / f"en-{t}.dev.tsv"),
             read_corpus(ROOT / "data" / "gold" / f"en-{t}.test.tsv")) for t in ("de", "it", "zh")]
    if SHARED.is_dir():
        for name, corpus in (("en-it XL-WA dev (half -> half)", read_corpus(SHARED / "en-it.xlwa-dev.tsv")),
                             ("en-zh Tsinghua (half -> half)",
                              read_corpus(SHARED / "zh-en.tsinghua-dev.src-tgt").swap())):
            if args.shared_limit:
                corpus = corpus.head(args.shared_limit)
            jobs.append((name, *corpus.split(0.5, seed=0)))
    cfg = ScoreConfig(progress=False)
    rows, details = [], {}
    for name, cal, test in jobs:
        t0 = time.perf_counter()
        scores, selection, headset = calibrate(lm, cal, score_cfg=cfg)
        ev = evaluate_headset(lm, headset, test, score_cfg=cfg)
        best = scores.heads.sort_values("source_acc", ascending=False).iloc[0]
        diag = scores.baselines.query("kind == 'diagonal' and query == 'own'").iloc[0]
        rows.append({
            "set": name, "cal/test pairs": f"{len(cal)}/{len(test)}",
            "best head (cal)": f"L{best['layer']}H{best['head']}@{best['query']}",
            "best source_acc": round(float(best.source_acc), 3), "diag source_acc": round(float(diag.source_acc), 3),
            "heads": " ".join(ev["heads"]), "AER test": round(ev["aer"], 3),
            "diag AER test": round(ev["diagonal"]["aer"], 3), "mean-heads AER test": round(ev["mean_heads"]["aer"], 3),
            "stable": headset.promoted, "seconds": round(time.perf_counter() - t0, 1),
        })
        details[name] = {"eval": ev, "stability": headset.stability, "trajectory": headset.evaluation["trajectory"]}
        print_table(rows[-1:], name)
    print_table(rows, "Heads of the embedded model: calibrated on one part, evaluated on the other")
    print(f"wrote {write_result('heads_report', {'rows': rows, 'details': details})}")


if __name__ == "__main__":
    main()
