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
# # 02 · Attention maps of alignment heads
#
# Word-level attention of a head on one sentence pair (target words × source words, attention summed over
# each source word's tokens), with the gold links overlaid: solid boxes are sure links, dashed ones
# possible links, red dots the row argmax. Then the mean of a head set, the interactive head explorer, and a
# check that TransformerLens sees exactly the attention alignheads replays.

# %%
# %matplotlib inline
import os

from IPython.display import display

from alignheads import HeadExplorer, PromptLayout, ScoreConfig, analysis, load_model, read_corpus, score_heads, tlens

# %% tags=["parameters"]
model = os.environ.get("ALIGNHEADS_MODEL", "embedded")  # "google/gemma-4-E4B-it" on a GPU; "tiny-gemma4": random
corpus_path = "../data/gold/en-zh.dev.tsv"
limit = 12  # pairs to score (the maps come from the scoring pass)
pair_id = None  # e.g. "talk01-s05"; None: the first pair of readable length
heads = []  # [(layer, head), ...]; empty: the 3 best heads by TS
query = "own"  # "own" (row at the target token) or "emit" (row that produces it)
fast = False

# %%
lm = load_model(model)
corpus = read_corpus(corpus_path)
scores = score_heads(lm, corpus, config=ScoreConfig(limit=3 if fast else limit))
chosen = analysis.pick_heads(scores, heads, k=3, query=query)
i = analysis.example_pair_index(scores, corpus, pair_id)
print("heads:", " ".join(map(str, chosen)), "| pair:", scores.pair_ids[i])

# %% [markdown]
# ## One head at a time

# %%
for head in chosen:
    display(analysis.attention_figure(scores, corpus, i, [head]))

# %% [markdown]
# ## The mean of the head set
# What the AlignAtt policy averages (after per-head normalisation) before taking the argmax.

# %%
display(analysis.attention_figure(scores, corpus, i, chosen))

# %% [markdown]
# ## Compare heads interactively
# The head explorer (notebook 00 explains it): click a head on the score map (or pick layer and head), choose a
# pair, add heads to the set and watch its ensemble AER; export the set as a head-set file. Outside a live
# kernel the picture below is a snapshot of it.

# %%
display(HeadExplorer(scores, corpus, lm, heads=chosen, pair=i, export_dir="../out/explorer"))

# %% [markdown]
# ## TransformerLens sees the same attention
# `tlens.boot_bridge` boots a `TransformerBridge` on its own copy of the model (a bridged model switches to
# eager attention; multimodal classes are refused, since booting one makes TransformerLens pip-install
# torchvision). Its `blocks.{l}.attn.hook_pattern` rows at the target tokens must equal the rows
# alignheads replays from the captured queries and keys. Optional extra: skipped, with the reason, when
# transformer-lens is not installed or the model is a multimodal class (Gemma-4 *-it).

# %%
reason = tlens.unavailable_reason(lm)
if reason is None:
    bridge = tlens.boot_bridge(lm)
    layout = PromptLayout.for_tokenizer(lm.tokenizer, corpus.src_lang, corpus.tgt_lang)
    display(tlens.compare_on_pair(lm, bridge, analysis.scored_pair(scores, corpus, i), chosen, layout))
else:
    print("TransformerLens comparison skipped:", reason)
