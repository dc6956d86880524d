"""The ablation's quality–latency curves (issue 21, item 4): the learned border on heads only and on position only,
against the reported heads + position border, simulated exactly as `bench_policies.py` runs it.

Per dataset the head set is `bench_policies`' (the same whole-source heads, calibrated on the same data); its
border is refitted with `calibrate_border(variant=...)` on the same calibration pairs, and each variant runs the
learned-border thresholds under the same stream (0.4 s per word, 0.25 s hold-back, `--dtype auto`). The
heads + position records are `bench_policies`' own. Reported: per variant and threshold BLEU / chrF / LAAL, and the
paired bootstrap of each heads + position point against the position-only curve interpolated at its LAAL (BLEU
and chrF). Each run is cached under `benchmarks/results/border_ablation/<variant>/<dataset>/`; the summary is
`benchmarks/results/border_ablation.json`.

    python benchmarks/bench_border_ablation.py [--threads 1] [--datasets en-de en-it] [--variants position heads]
"""

from __future__ import annotations

import argparse
from collections import OrderedDict

import bench_policies as bp
from common import RESULTS_DIR, pin_threads, print_table, write_result

CACHE = RESULTS_DIR / "border_ablation"
THRESHOLDS = (0.5, 0.8, 0.9)


def variant_heads(lm, ds: bp.Dataset, variant: str):
    """`bench_policies`' head set for `ds` with its learned border refitted on `variant`'s features (cached)."""
    from alignheads.heads.calibrate import calibrate_border
    from alignheads.heads.headset import load_headset

    source, path = bp.CACHE / ds.name / "heads.json", CACHE / variant / ds.name / "heads.json"
    hs = load_headset(source)
    if path.is_file() and (cached := load_headset(path)).top() == hs.top():
        return cached
    path.parent.mkdir(parents=True, exist_ok=True)
    corpus, _, _ = bp.load_calibration(ds)
    calibrate_border(lm, corpus.head(bp.BORDER_PAIRS), hs, variant=variant, progress=False)
    hs.save(path)
    return hs


def records(variant: str, name: str, thresholds) -> list[dict]:
    """The cached learned-border records of one variant (heads + position: bench_policies' own)."""
    base = bp.CACHE if variant == "heads+position" else CACHE / variant
    found = (bp.read_json(base / name / f"{bp.setting_label('learned-border', th, bp.HOLDBACK)}.json")
             for th in thresholds)
    return [r for r in found if r]


def summary(names, variants, thresholds) -> dict:
    """Curves of every variant and the full border's points against the position-only curve, per dataset."""
    from alignheads.corpus.formats import read_corpus
    from alignheads.simul.comparison import curve_rows, significance_rows

    out = {}
    for name in names:
        curves = {v: records(v, name, thresholds) for v in ("heads+position", *variants)}
        rows = [{"variant": v, **row} for v, recs in curves.items() for row in curve_rows(recs)]
        # The position-only curve as the one baseline the full border's points are compared against.
        position = [{**r, "curve": "position-only border"} for r in curves.get("position", [])]
        tests = significance_rows(curves["heads+position"] + position, read_corpus(bp.DATASETS[name].eval).tgt_lang)
        out[name] = {"curves": rows, "heads+position_vs_position": tests}
        print_table(rows, f"{name}: learned-border variants")
        if tests:
            print_table(tests, f"{name}: heads + position against the position-only curve at matched LAAL")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--datasets", nargs="+", choices=list(bp.DATASETS), default=["en-de", "en-it"])
    ap.add_argument("--variants", nargs="+", choices=("position", "heads"), default=["position", "heads"])
    ap.add_argument("--thresholds", nargs="+", type=float, default=list(THRESHOLDS))
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--splice", action="store_true", help="bring the cached runs up to the current translator "
                    "(bench_policies.py --splice), then the summary")
    args = ap.parse_args()
    threads = pin_threads(args.threads)
    if not args.summary_only:
        from alignheads.corpus.formats import read_corpus
        from alignheads.model.loader import load_model

        lm = load_model("embedded", dtype="auto")
        for name in args.datasets:
            ds, corpus, memo = bp.DATASETS[name], read_corpus(bp.DATASETS[name].eval), OrderedDict()
            for variant in args.variants:
                hs = variant_heads(lm, ds, variant)
                if args.splice:
                    settings = [("learned-border", th, bp.HOLDBACK) for th in args.thresholds]
                    bp.splice_stale(lm, ds, corpus, hs, settings, None, CACHE / variant)
                    continue
                for th in args.thresholds:
                    bp.run_setting(lm, ds, corpus, hs, ("learned-border", th, bp.HOLDBACK), memo, None,
                                   CACHE / variant)
    result = summary(args.datasets, args.variants, args.thresholds)
    write_result("border_ablation", {"datasets": result, "threads": threads, "thresholds": args.thresholds})


if __name__ == "__main__":
    main()
