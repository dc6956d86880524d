"""alignheads: find, score and use alignment heads of decoder-only LLMs for simultaneous translation.

The package is one subpackage per stage, in pipeline order (a stage imports only earlier ones):
`base` → `corpus` → `model` → `heads` → `simul` → `speech` → `serve` → `lab` → `cli`.

The public API, one import away (loaded on first use, so `import alignheads` stays cheap):

    from alignheads import load_model, read_corpus, calibrate, load_headset
    lm = load_model("embedded")
    scores, selection, headset = calibrate(lm, read_corpus("data/gold/en-de.dev.tsv"))
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module (inside alignheads) that defines it
_API = {
    # data and models
    "Corpus": "corpus.pairs", "SentencePair": "corpus.pairs", "read_corpus": "corpus.formats",
    "write_corpus": "corpus.formats", "validate_corpus": "corpus.validation",
    "load_model": "model.loader", "LoadedModel": "model.loader", "ModelFacts": "model.loader",
    "PromptLayout": "model.prompts", "render": "model.prompts",
    # heads: capture, scoring, selection, head-set files
    "AttentionCapture": "model.capture", "replay_rows": "model.attention",
    "ScoreConfig": "heads.scoring", "HeadScores": "heads.scoring", "score_heads": "heads.scoring",
    "SelectionConfig": "heads.selection", "select_heads": "heads.selection", "calibrate": "heads.calibrate",
    "evaluate_headset": "heads.calibrate",
    "Head": "heads.headset", "HeadEntry": "heads.headset", "HeadSet": "heads.headset",
    "load_headset": "heads.headset", "headset_filename": "heads.headset", "published_headset": "heads.registry",
    # translation
    "AlignAttConfig": "simul.policy", "POLICIES": "simul.policy", "get_policy": "simul.policy",
    "TranslatorConfig": "simul.translator", "SimultaneousTranslator": "simul.translator",
    "SourceWord": "simul.translator", "SimulationConfig": "simul.simulate", "simulate": "simul.simulate",
    "quality_latency": "simul.sweep", "policy_eval": "simul.oracle",
    # speech
    "load_asr": "speech.asr", "iter_chunks": "speech.audio", "StabilizerConfig": "speech.stabilizer",
    "CascadeConfig": "speech.pipeline", "build_cascade": "speech.pipeline", "build_translator": "speech.pipeline",
    "resolve_heads": "speech.pipeline", "run_stream": "speech.cascade", "talk_clip": "speech.talks",
    # scoring the output
    "score_instances": "simul.evaluation", "score_longform": "simul.evaluation",
    # looking at heads
    "HeadExplorer": "lab.explorer", "leaderboard": "lab.analysis",
    "AlignheadsError": "base.errors", "atomic_open": "base.fileio",
}
# modules the notebooks use as namespaces: alignheads.viz.head_heatmap(...)
_MODULES = {"viz": "lab.viz", "analysis": "lab.analysis", "figures": "lab.figures", "tlens": "lab.tlens"}
__all__ = ["__version__", *_API, *_MODULES]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{_MODULES[name]}", __name__)
    else:
        raise AttributeError(f"module 'alignheads' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
