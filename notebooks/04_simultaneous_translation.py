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
# # 04 · Simultaneous translation with the alignment heads
#
# The AlignAtt policy on a decoder-only LLM: at every new source word the translator drafts a few greedy
# tokens, replays the selected heads' attention at the draft positions, and emits the draft up to the
# first token that attends to source the speaker has not said yet. First on a text stream (source words
# revealed at a fixed pace) against the baseline policies, then end to end on a shipped spoken talk:
# streaming ASR -> stabiliser -> translator.

# %%
# %matplotlib inline
import os
from pathlib import Path

import pandas as pd
from IPython.display import display

from alignheads import (
    CascadeConfig,
    ScoreConfig,
    SelectionConfig,
    SimulationConfig,
    StabilizerConfig,
    build_cascade,
    calibrate,
    figures,
    iter_chunks,
    load_model,
    read_corpus,
    run_stream,
    score_longform,
    simulate,
    talk_clip,
    viz,
)

# %% tags=["parameters"]
model = os.environ.get("ALIGNHEADS_MODEL", "embedded")  # "google/gemma-4-E4B-it" on a GPU; "tiny-gemma4": random
calib_path = "../data/gold/en-de.dev.tsv"  # heads are calibrated here (dev talks)
test_path = "../data/gold/en-de.test.tsv"  # and used here (held-out talks)
threshold = 0.1  # head selection threshold on TS
sentences = 6  # held-out sentences streamed as text
pace = 0.4  # seconds per source word on the text stream
talk = "../data/talks/talk04.wav"  # a shipped spoken test talk (its script is test talks' English side)
clip_s = None  # seconds of the talk to translate (None: all of it)
chunk_ms = 850  # ASR chunk: 850 ms (low latency) or 1500 ms (high)
results = "../benchmarks/results/policies.json"  # bench_policies' saved four-policy comparison (hours to recompute)
fast = False

# %% [markdown]
# ## Heads
# Calibrated on the dev talks in the run-time prompt layout (notebook 03 explains the steps). With
# Gemma-4-E4B-it, `alignheads.heads.registry.published_headset(...)` gives the paper's heads instead, and
# `alignheads.heads.headset.load_headset(path)` reads an exported file.

# %%
lm = load_model(model)
calib, test = read_corpus(calib_path), read_corpus(test_path)
_, _, headset = calibrate(lm, calib, score_cfg=ScoreConfig(limit=3 if fast else None),
                          select_cfg=SelectionConfig(threshold=threshold))
print("heads:", " ".join(map(str, headset.top())))

# %% [markdown]
# ## A text stream
# Each held-out sentence is revealed word by word; the translator updates at every word and translates
# the sentence to its end once it is complete. Quality (BLEU, chrF) and latency (AL / LAAL / YAAL in
# source words; `_cu` ignores computation time, `_ca` adds it).

# %%
sim = SimulationConfig(pace=pace, limit=2 if fast else sentences)
result = simulate(lm, test, headset, "alignatt", sim=sim)
display(pd.DataFrame({"prediction": [i.prediction for i in result.instances],
                      "reference": [i.reference for i in result.instances]}))
display(pd.Series({k: result.scores[k] for k in ("bleu", "chrf", "al_cu", "laal_cu", "yaal_cu", "laal_ca")}))

# %% [markdown]
# ## The policy trace of one sentence
# Target words emitted over time against the source words available, with why each update stopped;
# then the decisions of the update that first held something back.

# %%
first = result.runs[0]
display(viz.policy_trace(first.trace_frame(), title=f"{test[0].id}: AlignAtt, {pace:g} s per source word"))
display(pd.DataFrame([{"time": u.time - first.start, "source": u.n_accessible, "stop": u.stop_reason,
                       "emitted": u.new_text} for u in first.updates]))

# %%
held = next((u for u in first.updates if u.decision_trace.tokens and u.stop_reason != "final"), first.updates[-1])
display(held.decision_trace.to_frame())

# %% [markdown]
# ## Against the baselines
# wait-k (k source words ahead), cut-last (withhold the last x draft words) and local agreement against
# AlignAtt over its border, on the held-out en-de test set streamed as text at 0.4 s per word. The full
# comparison (36 sentences, every setting, paired bootstrap) takes hours on 2 CPU cores: it is read from
# `benchmarks/bench_policies.py`'s saved results when they exist; otherwise a small sweep runs here.

# %%
name = f"{headset.src_lang}-{headset.tgt_lang}"
bench = figures.load_policy_results(results) if Path(results).is_file() else {"datasets": {}}
if name in bench["datasets"]:
    curves = figures.benchmark_curves(bench, name)
    display(curves)
    display(figures.quality_latency_figure(curves, name, unit=bench["latency_unit"]))
else:
    grid, limit = (figures.QL_GRID_FAST, 1) if fast else (figures.QL_GRID, sentences)
    curves = figures.quality_latency_seconds(lm, test, headset, grid, pace=pace, limit=limit)
    display(curves)
    display(figures.quality_latency_figure(curves, name))

# %% [markdown]
# ## A spoken talk, end to end
# Audio in 850 ms chunks -> embedded Whisper (re-transcribing since the last committed sentence) ->
# stabiliser (commit up to the last sentence end both latest hypotheses agree on) -> the AlignAtt
# translator, assembled by `build_cascade` exactly as `alignheads translate` assembles it (the ASR tail is
# shown in the prompt but held back 0.25 s; the default border b = −2, see `alignheads.simul.policy`). Emission
# times are on the stream clock (CU) and as if played in real time on this machine (CA). Scored long-form
# with OmniSTEval after re-segmenting the output.

# %%
audio, refs, segments = talk_clip(talk, headset.tgt_lang, 7.5 if fast else clip_s)
config = CascadeConfig(heads=headset, src=headset.src_lang, tgt=headset.tgt_lang,
                       stabilizer=StabilizerConfig(chunk_ms=chunk_ms))
cascade = build_cascade(config, lm=lm)
emissions = run_stream(cascade, iter_chunks(audio, config.stabilizer.chunk_samples))
print(cascade.text)
display(pd.DataFrame([vars(e) for e in emissions]).head(30))

# %%
display(pd.Series(score_longform(cascade.instance(reference=" ".join(refs)), refs, headset.tgt_lang, segments)))
print(cascade.stats, f"real-time factor {cascade.stats.rtf:.2f}")
