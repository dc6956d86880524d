# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · The paper's figures for the chosen model
#
# AlignAtt4LLM's analysis, redone on the shipped hand-aligned talks for any model: per direction, heads
# are calibrated on the `dev` talks and evaluated on the held-out `test` talks. Every figure is written
# to `out` (`alignheads figures` runs the same functions without the notebook and also writes
# `manifest.json` with the numbers behind the plots).

# %%
# %matplotlib inline
import os
from pathlib import Path

import pandas as pd
from IPython.display import display

from alignheads import figures, load_model, viz

# %% tags=["parameters"]
model = os.environ.get("ALIGNHEADS_MODEL", "embedded")  # "google/gemma-4-E4B-it" on a GPU; "tiny-gemma4": random
directions = ["en-de", "en-it", "en-zh"]
data_dir = "../data/gold"  # <src>-<tgt>.dev.tsv and <src>-<tgt>.test.tsv
out = "../out/figures"  # `make figures` writes the committed figures/ (and its manifest.json)
limit = None  # pairs per corpus
k = 8  # top-k heads (the paper keeps 8)
threshold = 0.1  # a head counts when its TS exceeds this (paper)
results = "../benchmarks/results/policies.json"  # bench_policies' saved results (the sweep takes hours)
fast = False  # a few pairs per corpus

# %%
settings = dict(model=model, directions=tuple(directions), data_dir=data_dir, k=k, threshold=threshold)
cfg = figures.FigureConfig.fast(**settings) if fast else figures.FigureConfig(**settings, limit=limit)
lm = load_model(cfg.model)
runs = figures.run_directions(lm, cfg)
for name, run in runs.items():
    print(f"{name}: calibrated on {len(run.scores.pair_ids)} pairs, held-out {len(run.test_scores.pair_ids)}; "
          f"head set {' '.join(map(str, run.headset.top()))}")

# %% [markdown]
# ## Translation Score heatmaps, one per direction
# TS of every layer x query head at the target token itself; the top-k are outlined and ranked,
# KV-shared layers hatched.

# %%
for name, run in runs.items():
    display(figures.ts_heatmap(run, lm.facts, cfg.k, save=f"{out}/ts_heatmap_{name}.png"))

# %% [markdown]
# ## A shared kernel across directions
# The top-k heads (TS above the threshold) of each direction and their intersections. The paper found
# seven of Gemma-4's eight en-de heads in en-it and en-zh too; with Gemma-4-E4B-it the published sets
# join the figure.

# %%
display(figures.kernel_sets(runs, cfg.k, cfg.threshold, lm.facts))
display(figures.shared_kernel(runs, lm.facts, cfg.k, cfg.threshold, save=f"{out}/shared_kernel.png"))

# %% [markdown]
# ## The paper's head figure, beside this model
# Gemma-4-E4B-it's mean TS over en→{de, it, zh} from the authors' published `ts_matrix` (vendored in
# `alignheads/published/`), the registry's shared set outlined, the KV-shared layers 24–41 hatched (the
# paper's runtime cannot read heads there); beside it this model's mean TS with the heads in every
# direction's top-k outlined. Then where in the stack the heads sit, by relative depth.

# %%
display(figures.paper_heads_figure(runs, lm.facts, cfg.k, cfg.threshold, save=f"{out}/paper_heads.png"))
display(figures.head_depth_figure(runs, lm.facts, cfg.k, save=f"{out}/head_depth.png"))

# %% [markdown]
# ## Word aligners on the held-out talks
# Every aligner is fitted on the calibration talks only: the diagonal, the mean of all heads, the top-4 by
# TS (the authors' runtime), the greedy ensemble, learned head weights (non-negative L1 logistic regression),
# and SimAlign with the embedded encoder (no fitting).

# %%
aligners = figures.aligner_table(runs, threshold=cfg.threshold)
display(aligners)
display(viz.aligner_comparison(aligners.dropna(subset=["aer"]), save=f"{out}/aligners.png"))

# %% [markdown]
# ## Stability of TS across halves of the calibration data

# %%
for name, run in runs.items():
    display(figures.stability_figure(run.scores, cfg.k, cfg.seed, title=f"{name}: half-split stability of TS",
                                     save=f"{out}/stability_{name}.png"))

# %% [markdown]
# ## What the best head sees
# The best head's word-level attention on one calibration pair, gold links overlaid.

# %%
for name, run in runs.items():
    display(figures.attention_example(run, cfg.example_pair, save=f"{out}/attention_{name}.png"))

# %% [markdown]
# ## Head-set ablation
# Ensemble AER of the first k heads (ranked by calibration TS) on the held-out and calibration talks,
# against the positional diagonal baseline.

# %%
table, baselines = figures.ablation_table(runs, cfg.ks)
display(table)
display(baselines)
display(figures.ablation_figure(table, baselines[baselines["name"] == "diagonal"],
                                save=f"{out}/headset_ablation.png"))

# %% [markdown]
# ## Quality against latency
# All four policies on every shipped test set and the shared XL-WA dev, streamed as text at 0.4 s per
# word (latency: computation-unaware LAAL in source words), read from `benchmarks/bench_policies.py`'s saved
# results — `make figures` draws the same figures into `figures/`. Then the paired bootstrap of AlignAtt
# against each baseline at matched latency; the oracle premature-emission rate of the selected heads when the
# prompt shows only what was heard (realistic) and the whole source; where the first draft token's heads point
# when AlignAtt decides; and for one sentence: its emissions against the source available, and where the heads
# pointed (every draft token's aligned source word against the border).

# %%
if Path(results).is_file():
    bench = figures.load_policy_results(results)
    for name, part in bench["datasets"].items():
        curves = figures.benchmark_curves(bench, name)
        display(curves)
        display(figures.quality_latency_figure(curves, name, unit=bench["latency_unit"]))
        display(pd.DataFrame(part["significance"]))
        display(pd.DataFrame(part.get("oracle") or []))
        display(pd.DataFrame(part.get("attention_offsets") or []))
        for fig in figures.policy_trace_figures(*figures.traced_sentence(bench, name, Path(results).parent), name):
            display(fig)
else:
    print(f"{results} not found: run `python benchmarks/bench_policies.py` first")
