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

from IPython.display import display

from alignheads import figures
from alignheads.models import load_model
from alignheads.saved import saved_quality_latency

# %% tags=["parameters"]
model = os.environ.get("ALIGNHEADS_MODEL", "embedded")  # "google/gemma-4-E4B-it" on a GPU; "tiny-gemma4": random
directions = ["en-de", "en-it", "en-zh"]
data_dir = "../data/gold"  # <src>-<tgt>.dev.tsv and <src>-<tgt>.test.tsv
out = "../out/figures"  # `make figures` writes the committed figures/ (and its manifest.json)
limit = None  # pairs per corpus
k = 8  # top-k heads (the paper keeps 8)
threshold = 0.1  # a head counts when its TS exceeds this (paper)
ql_directions = ["en-de", "en-it", "en-zh"]  # quality-latency sweeps are the expensive part
ql_limit = 6  # held-out sentences per sweep
ql_results = "../figures/manifest.json"  # saved quality-latency sweeps (`make figures`); used when they match
fast = False  # a few pairs and a small sweep

# %%
settings = dict(model=model, directions=tuple(directions), data_dir=data_dir, k=k, threshold=threshold,
                ql_directions=tuple(ql_directions))
cfg = figures.FigureConfig.fast(**settings) if fast else figures.FigureConfig(**settings, limit=limit,
                                                                                ql_limit=ql_limit)
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
# AlignAtt with each direction's calibrated head set against wait-k and cut-last on held-out sentences
# streamed as text at a fixed pace; latency is computation-unaware LAAL in seconds. Then one sentence's
# emissions against the source available. The sweeps take about 20 minutes on 2 CPU cores: when `make figures`
# saved the very same ones in `ql_results` (model, head set, held-out sentences, pace, grid), they are loaded.

# %%
for name in cfg.ql_directions:
    run = runs[name]
    curves, note = saved_quality_latency(ql_results, name, model_id=lm.facts.model_id, corpus=run.test,
                                         headset=run.headset, pace=cfg.ql_pace, limit=cfg.ql_limit, grid=cfg.ql_grid)
    if curves is None:
        curves = figures.quality_latency_curves(lm, run, cfg)
    print(note)
    display(curves)
    display(figures.quality_latency_figure(curves, name, save=f"{out}/quality_latency_{name}.png"))
    display(figures.policy_trace_example(lm, runs[name], cfg, save=f"{out}/policy_trace_{name}.png"))
