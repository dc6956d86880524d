"""alignheads: find, score and use alignment heads of decoder-only LLMs for simultaneous translation.

The public API, one import away (loaded on first use, so `import alignheads` stays cheap):

    from alignheads import load_model, read_corpus, calibrate, load_headset
    lm = load_model("embedded")
    scores, selection, headset = calibrate(lm, read_corpus("data/gold/en-de.dev.tsv"))
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it
_API = {
    # data and models
    "Corpus": "data", "SentencePair": "data", "read_corpus": "data", "write_corpus": "data",
    "load_model": "models", "LoadedModel": "models", "ModelFacts": "models",
    "PromptLayout": "prompts", "render": "prompts",
    # heads: capture, scoring, selection, head-set files
    "AttentionCapture": "capture", "replay_rows": "attention",
    "ScoreConfig": "scoring", "HeadScores": "scoring", "score_heads": "scoring",
    "SelectionConfig": "selection", "select_heads": "selection", "calibrate": "calibrate",
    "evaluate_headset": "calibrate",
    "Head": "headset", "HeadEntry": "headset", "HeadSet": "headset", "load_headset": "headset",
    "published_headset": "registry",
    # translation
    "AlignAttConfig": "policy", "POLICIES": "policy", "get_policy": "policy",
    "TranslatorConfig": "translator", "SimultaneousTranslator": "translator", "SourceWord": "translator",
    "SimulationConfig": "simulate", "simulate": "simulate", "quality_latency": "sweep", "policy_eval": "oracle",
    # speech
    "load_asr": "asr", "CascadeConfig": "pipeline", "build_cascade": "pipeline", "build_translator": "pipeline",
    "resolve_heads": "pipeline", "run_stream": "cascade",
    # scoring the output
    "score_instances": "evaluation", "score_longform": "evaluation",
    "AlignheadsError": "errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'alignheads' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
