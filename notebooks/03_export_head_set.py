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
# # 03 · Select, check and export a head set
#
# Calibrate on the `dev` talks (score every head, select heads, run the half-split stability gate), choose
# how many heads the runtime should read on the calibration data, confirm on the held-out `test` talks,
# export the head-set file, validate it against the model, and compare with the heads the paper
# published for Gemma-4-E4B-it.

# %%
# %matplotlib inline
import os

import pandas as pd
from IPython.display import display

from alignheads import (
                                    PromptLayout,
                                    ScoreConfig,
                                    SelectionConfig,
                                    analysis,
                                    calibrate,
                                    figures,
                                    headset_filename,
                                    load_headset,
                                    load_model,
                                    published_headset,
                                    read_corpus,
                                    score_heads,
                                    viz,
)

# %% tags=["parameters"]
model = os.environ.get("ALIGNHEADS_MODEL", "embedded")  # "google/gemma-4-E4B-it" on a GPU; "tiny-gemma4": random
calib_path = "../data/gold/en-de.dev.tsv"  # calibration: dev talks 01-03
test_path = "../data/gold/en-de.test.tsv"  # held out: test talks 04-06
selection = "greedy"  # "greedy" (ensemble search by AER) or "topk" (the paper's top-k by TS)
k = 8  # maximum heads in the set
threshold = 0.1  # a head is a candidate when its TS exceeds this
out_dir = "../out/headsets"
limit = None  # pairs per corpus
fast = False

# %%
lm = load_model(model)
calib, test = read_corpus(calib_path), read_corpus(test_path)
score_cfg = ScoreConfig(limit=3 if fast else limit)
scores, chosen, headset = calibrate(lm, calib, score_cfg=score_cfg,
                                    select_cfg=SelectionConfig(method=selection, k=k, threshold=threshold))
print(f"{selection} selection on {len(scores.pair_ids)} pairs:", " ".join(map(str, chosen.heads)))
display(chosen.trajectory)

# %% [markdown]
# ## Stability gate
# Re-score two seeded random halves of the calibration pairs: the top-k by TS must be identical and the
# selected heads' TS may move by at most 0.03 (the paper's rule). The verdict is stored in the file
# (`promoted`).

# %%
print(chosen.stability["rule"], "->", "passed" if chosen.promoted else "FAILED")
display(pd.DataFrame(chosen.stability["splits"]))
display(figures.stability_figure(scores, k=len(chosen.heads)))

# %% [markdown]
# ## Choose k
# Readers take the first k heads of the file (sorted by TS). The ensemble AER of the first k on the
# calibration pairs picks k; the held-out talks confirm it (never choose on them).

# %%
layout = PromptLayout.from_dict(headset.layout)
test_scores = score_heads(lm, test, layout, score_cfg)
table = figures.k_table(headset.top(), {"calibration": (scores, calib), "held-out": (test_scores, test)})
baselines = figures.baseline_table(test_scores, split="held-out")
k_runtime = figures.best_k(table, "calibration")
print("k chosen on the calibration data:", k_runtime)
display(table)
display(baselines)

# %%
display(viz.headset_ablation(table, baselines=baselines))

# %% [markdown]
# ## Export and validate
# The file keeps the authors' runtime format (`token_alignment_heads`) and adds the model's shape, the full
# score matrices, the prompt layout, the calibration corpus and the stability verdict. `validate` fails
# loudly when a file does not fit a model or was calibrated with another prompt layout.

# %%
path = headset.save(f"{out_dir}/{headset_filename(headset.model_id, headset.src_lang, headset.tgt_lang)}")
loaded = load_headset(path)
loaded.validate(lm.facts, layout)
print(f"{path}: {len(loaded.heads)} heads, valid for {lm.facts.model_id} with layout {layout.id}; "
      f"read the first {k_runtime}")

# %% [markdown]
# ## The paper's published Gemma-4-E4B-it heads
# The registry ships them; they only mean something for Gemma-4-E4B-it (42 layers x 8 heads). On another
# model the comparison says so instead of comparing indices.

# %%
published = published_headset("google/gemma-4-E4B-it", headset.src_lang, headset.tgt_lang)
comparison, verdict = analysis.published_comparison(headset, published, lm.facts)
print(verdict)
display(comparison)
