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
# # 01 · Score every attention head as a word aligner
#
# Each sentence pair is rendered in the **exact prompt layout the translator uses at run time**, the
# reference translation is teacher-forced after it, and every head (layer × query head) is scored on how
# well its attention finds the gold-aligned source word of each target token:
#
# - `ts`: the paper's Translation Score (argmax over the whole sequence lands on a gold source token);
# - `source_acc`: the same with the argmax restricted to the source span;
# - `gold_mass`: attention mass on the gold source tokens; `aer`: alignment error rate of the induced alignment.
#
# `own` reads the row at the target token itself, `emit` the row one position earlier (what a decoder
# sees while drafting). Two baselines sit beside the heads: a positional `diagonal` aligner and the
# `mean_heads` of all heads.

# %%
# %matplotlib inline
import os

from IPython.display import display

from alignheads import ScoreConfig, leaderboard, load_model, read_corpus, score_heads, viz

# %% tags=["parameters"]
model = os.environ.get("ALIGNHEADS_MODEL", "embedded")  # "google/gemma-4-E4B-it" on a GPU; "tiny-gemma4": random
corpus_path = "../data/gold/en-de.dev.tsv"  # any aligned corpus read_corpus understands (en-it, en-zh beside it)
limit = None  # score only the first N pairs
top_k = 8
fast = False  # CI: a few pairs only

# %% [markdown]
# ## Model and corpus
# `lm.facts` is what scoring and head sets need to know about the model's attention: layers, query and
# KV heads, head sizes, sliding/full layers and the KV-shared layers (Gemma-4's last layers reuse
# earlier caches).

# %%
lm = load_model(model)
corpus = read_corpus(corpus_path)
print(f"{corpus.name}: {len(corpus)} pairs, {corpus.src_lang}->{corpus.tgt_lang}")
display(lm.facts)

# %% [markdown]
# ## Score every head
# One forward per pair: queries and keys are captured as the model runs (bit-identical outputs) and only
# the rows at target positions are replayed.

# %%
scores = score_heads(lm, corpus, config=ScoreConfig(limit=3 if fast else limit))
print(f"scored {len(scores.pair_ids)} pairs, {scores.n_layers} layers x {scores.n_heads} heads")

# %% [markdown]
# ## Browse the table
# One row per (query kind, layer, head); sort by any column.

# %%
display(scores.heads.sort_values("ts", ascending=False).head(12))

# %% [markdown]
# ## Heatmaps
# TS per head for both query kinds (top-k outlined and ranked, KV-shared layers hatched), then AER
# (lower is better).

# %%
display(viz.head_heatmap(scores.heads, "ts", top_k=top_k, kv_shared_layers=lm.facts.kv_shared))

# %%
display(viz.head_heatmap(scores.heads, "aer", top_k=top_k, kv_shared_layers=lm.facts.kv_shared))

# %% [markdown]
# ## Top heads against the baselines
# A good alignment head beats the positional diagonal on AER and the mean of all heads on every score.

# %%
display(leaderboard(scores, k=top_k, column="ts", query="own"))

# %%
display(leaderboard(scores, k=top_k, column="aer", query="emit"))
