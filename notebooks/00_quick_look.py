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
# # 00 · Quick look: which attention heads align words?
#
# Score every attention head of the model as a word aligner on the 36 hand-aligned en→de pairs of the dev
# talks (one forward pass per pair, in the prompt layout the translator uses), then explore the result:
#
# - **left**: a score of every layer × query head (TS, AER or source-only accuracy; `own` reads the row at
#   the target token, `emit` the row that produces it; hatched layers share their keys with an earlier
#   layer). Click a cell, or pick layer and head, to select that head (black box).
# - **right**: the selected head's word-level attention on the chosen pair, with the gold links (solid: sure,
#   dashed: possible) and each target word's argmax (red dot); beside it the mean of the head set (red boxes
#   on the map), which is what the AlignAtt policy reads.
# - **add / remove** changes the head set; the line below shows its ensemble AER on all scored pairs.
# - **export** writes the head set as a head-set file (validated against the model, as `alignheads score`
#   does), ready for `alignheads simulate --heads FILE`.
#
# Everything is computed once by the scoring cell; the widget only redraws.

# %%
# %matplotlib inline
import os

from IPython.display import display

from alignheads import HeadExplorer, ScoreConfig, SelectionConfig, load_model, read_corpus, score_heads, select_heads

# %% tags=["parameters"]
model = os.environ.get("ALIGNHEADS_MODEL", "embedded")  # "google/gemma-4-E4B-it" on a GPU; "tiny-gemma4": random
corpus_path = "../data/gold/en-de.dev.tsv"
limit = None  # pairs to score (None: all)
threshold = 0.1  # heads with TS above this are candidates for the starting head set
export_dir = "../out/explorer"  # where the export button writes (the file name follows the convention)
fast = False

# %%
lm = load_model(model)
corpus = read_corpus(corpus_path)
scores = score_heads(lm, corpus, config=ScoreConfig(limit=3 if fast else limit))
selection = select_heads(scores, corpus, SelectionConfig(threshold=threshold))
print(f"{lm.facts.model_id}: {scores.n_layers} layers x {scores.n_heads} heads, {len(scores.pair_ids)} pairs scored; "
      f"starting head set (greedy search by AER): {' '.join(map(str, selection.heads)) or 'none above the threshold'}")

# %% [markdown]
# ## The explorer

# %%
explorer = HeadExplorer(scores, corpus, lm, heads=selection.heads, export_dir=export_dir)
display(explorer)

# %% [markdown]
# ## The same from code
# The widget is a thin layer over `HeadExplorer`: `select`, `add`, `remove`, `set_pair`, `readout`, `export`.

# %%
print(explorer.head_info())
print(explorer.readout())
