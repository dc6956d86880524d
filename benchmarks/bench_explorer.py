"""Head explorer redraw time (issue 12): every widget interaction on the embedded model with 36 scored pairs.

`python benchmarks/bench_explorer.py [--repeats 12] [--threads 1] [--limit 36]`

Scores the en-de dev pairs once (that is the only model work), builds the explorer's widget, then drives its
controls the way a click in the browser does (`head.value = ...`, `add.click()`, the score-map click handler)
and times what each interaction costs in the kernel: the state change and the PNGs of every image it redraws
(sending them to the browser and the browser's decoding are not included). Target: < 0.5 s per redraw.
Prints a table; writes results/explorer.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import pin_threads, print_table, write_result  # noqa: E402

TARGET_S = 0.5


def timed(fn) -> tuple[float, float]:
    """(wall, process CPU) seconds of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "data" / "gold" / "en-de.dev.tsv"))
    p.add_argument("--limit", type=int, default=36, help="pairs to score (default 36: all of en-de dev)")
    p.add_argument("--repeats", type=int, default=12, help="times each interaction is repeated (default 12)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="explorer")
    args = p.parse_args(argv)
    pin_threads(args.threads)

    from alignheads.corpus.formats import read_corpus
    from alignheads.heads.scoring import ScoreConfig, score_heads
    from alignheads.heads.selection import SelectionConfig, select_heads
    from alignheads.lab.explorer import HeadExplorer
    from alignheads.model.loader import load_model

    lm = load_model(args.model)
    corpus = read_corpus(args.data)
    t0 = time.perf_counter()
    scores = score_heads(lm, corpus, config=ScoreConfig(limit=args.limit))
    score_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    heads = select_heads(scores, corpus, SelectionConfig()).heads
    select_s = time.perf_counter() - t0
    tmp = tempfile.mkdtemp(prefix="bench-explorer-")
    ex = HeadExplorer(scores, corpus, lm, heads=heads, export_dir=tmp)
    first_wall, first_cpu = timed(ex.widget)  # builds the widget and draws both images once
    w = ex._widget
    L, H, n_pairs = scores.n_layers, scores.n_heads, len(scores.pair_ids)

    def click(layer: int, head: int) -> None:
        sm = ex._score_map()
        x, y = sm.ax.transData.transform((head, layer))
        w._on_click({"dataX": x, "dataY": sm.fig.bbox.height - y})

    def toggle(control, values):
        control.value = values[(values.index(control.value) + 1) % len(values)]

    times: dict[str, list[tuple[float, float]]] = {}
    first_time: dict[str, tuple[float, float]] = {}
    for r in range(args.repeats):
        steps = {
            "pick head (dropdown)": lambda r=r: setattr(w.head, "value", (w.head.value + 1) % H),
            "pick layer (dropdown)": lambda r=r: setattr(w.layer, "value", (w.layer.value + 5) % L),
            "click on the score map": lambda r=r: click((3 * r + 1) % L, (r + 2) % H),
            "change pair": lambda r=r: setattr(w.pair, "value", (w.pair.value + 1) % n_pairs),
            "add to head set": lambda: (w.add if not w.add.disabled else w.remove).click(),
            "remove from head set": lambda: (w.remove if not w.remove.disabled else w.add).click(),
            "switch score (TS/AER/source acc)": lambda: toggle(w.metric, ["ts", "aer", "source_acc"]),
            "switch query (own/emit)": lambda: toggle(w.query, list(scores.queries)),
        }
        for name, step in steps.items():
            t = timed(step)
            if r == 0 and name.startswith("switch"):  # the first visit of a score map builds it
                first_time[name] = t
            else:
                times.setdefault(name, []).append(t)
    if not ex.heads:  # (a random tiny model selects none)
        ex.add()
    export_wall, _ = timed(w.export.click)
    assert "wrote" in w.status.value, w.status.value
    snapshot_wall, _ = timed(ex.snapshot_png)

    rows = []
    for name, ts in times.items():
        walls, cpus = [t[0] for t in ts], [t[1] for t in ts]
        rows.append({"interaction": name, "n": len(ts), "wall_median_s": statistics.median(walls),
                     "wall_max_s": max(walls), "cpu_median_s": statistics.median(cpus),
                     "under_target": max(walls) < TARGET_S})
    print_table(rows, f"explorer redraws, {args.model}, {n_pairs} pairs, {L} layers x {H} heads "
                      f"(target < {TARGET_S} s)")
    once = [{"what": "score_heads (once per corpus)", "wall_s": score_s},
            {"what": "greedy head selection (once)", "wall_s": select_s},
            {"what": "build widget + first draw", "wall_s": first_wall},
            *({"what": f"{k}: first visit (builds the map)", "wall_s": v[0]} for k, v in first_time.items()),
            {"what": "export head-set file (write, read back, validate)", "wall_s": export_wall},
            {"what": "static snapshot PNG (notebook display)", "wall_s": snapshot_wall}]
    print_table(once, "one-off costs")
    path = write_result(args.name, {"model": lm.facts.model_id, "pairs": n_pairs, "target_s": TARGET_S,
                                    "repeats": args.repeats, "redraws": rows, "one_off": once})
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
