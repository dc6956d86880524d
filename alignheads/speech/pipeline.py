"""Assembly: the one place that turns settings into a translator or a speech cascade.

The CLI, the MT server, the SimulStream adapter, the notebooks and the demo all build through
`resolve_heads`, `build_translator` and `build_cascade(CascadeConfig)`, so one setting (the
hold-back, the border, a preset) means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Literal

from ..base.errors import AlignheadsError
from ..heads.headset import HeadLike, HeadSet, load_headset
from ..model.loader import LoadedModel, load_model
from ..simul.policy import get_policy
from ..simul.translator import SimultaneousTranslator, TranslatorConfig
from .presets import DEFAULT_HOLDBACK, PRESETS
from .stabilizer import StabilizerConfig
from .vad import VADConfig

CASCADE_MEMO = 8  # drafts remembered by prompt in the cascade

HeadSpec = str | Path | HeadSet | Sequence[HeadLike] | None


def resolve_heads(spec: HeadSpec, model_id: str, src: str, tgt: str) -> HeadSet | Sequence[HeadLike] | None:
    """A head set from a spec: a head-set file, "published" (the package registry for this model and direction),
    a HeadSet or head list (returned as is), or None (policies that need no heads)."""
    if spec is None or isinstance(spec, HeadSet) or (isinstance(spec, Sequence) and not isinstance(spec, str)):
        return spec
    if str(spec) == "published":
        from ..heads.registry import published_headset

        return published_headset(model_id, src, tgt)
    return load_headset(spec)


def set_option(config: Any, name: str, value: Any) -> Any:
    """A copy of a (nested) dataclass config with the dotted field `name` set to `value` (converted to its type)."""
    head, _, rest = name.partition(".")
    names = {f.name for f in fields(config)} if is_dataclass(config) else set()
    if head not in names:
        known = ", ".join(sorted(names))
        raise AlignheadsError(f"unknown setting {name!r} for {type(config).__name__}; known: {known}")
    current = getattr(config, head)
    if rest:
        return replace(config, **{head: set_option(current, rest, value)})
    if current is not None and not isinstance(value, type(current)):
        try:
            value = type(current)(value)
        except (TypeError, ValueError) as e:
            raise AlignheadsError(f"setting {name!r}: expected {type(current).__name__}, got {value!r}") from e
    return replace(config, **{head: value})


def apply_preset(config: TranslatorConfig, name: str | None) -> TranslatorConfig:
    """`config` with the named preset's settings applied (None: unchanged)."""
    if name is None:
        return config
    if name not in PRESETS:
        raise AlignheadsError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    for key, value in PRESETS[name].items():
        config = set_option(config, key, value)
    return config


# Flat setting names (CLI flags, SimulStream YAML keys, server overrides) -> TranslatorConfig fields.
SETTINGS: dict[str, str] = {
    "border": "alignatt.border", "rewind": "alignatt.rewind", "z_score": "alignatt.z_score",
    "median_width": "alignatt.median_width", "max_draft": "alignatt.max_draft", "wait_k": "wait_k",
    "cut_last": "cut_last", "holdback": "holdback", "final_max_tokens": "final_max_tokens", "top_k": "top_k",
}


def configure_translator(base: TranslatorConfig | None = None, preset: str | None = None,
                         **settings: Any) -> TranslatorConfig:
    """`base` with the named preset applied, then every setting that is not None (names from `SETTINGS`)."""
    config = apply_preset(base or TranslatorConfig(), preset)
    for key, value in settings.items():
        if value is None:
            continue
        if key not in SETTINGS:
            raise AlignheadsError(f"unknown translator setting {key!r}; known: {', '.join(SETTINGS)}")
        config = set_option(config, SETTINGS[key], value)
    return config


def build_translator(lm: LoadedModel, heads: HeadSpec, src: str, tgt: str, policy: str = "alignatt",
                     config: TranslatorConfig | None = None, **kw) -> SimultaneousTranslator:
    """A `SimultaneousTranslator` for `lm` with heads resolved from `heads` (file, "published", HeadSet, list).

    Heads are loaded only for policies that use them; extra keywords go to the translator (layout, memo)."""
    pol = get_policy(policy)
    if pol.needs_heads and heads is None:
        raise AlignheadsError(f"the {policy} policy needs alignment heads (--heads): a head-set file from "
                              "`alignheads score`, or 'published' for the package registry's")
    resolved = resolve_heads(heads, lm.facts.model_id, src, tgt) if pol.needs_heads else None
    return SimultaneousTranslator(lm, resolved, src, tgt, policy, config, **kw)


@dataclass
class CascadeConfig:
    """Everything a speech cascade needs: models, heads, direction, policy and its settings, chunking.

    `translator.holdback` is the one hold-back: the prompt shows every heard word, and a word counts as
    accessible once it ended at least that long ago."""

    model: str = "embedded"
    heads: HeadSpec = None  # head-set file, "published", a HeadSet; None only for policies without heads
    src: str = "en"
    tgt: str = "de"
    policy: str = "alignatt"
    # memo: an update where only accessibility changed shows the same prompt; its draft is reused
    translator: TranslatorConfig = field(default_factory=lambda: TranslatorConfig(holdback=DEFAULT_HOLDBACK,
                                                                                 memo_size=CASCADE_MEMO))
    stabilizer: StabilizerConfig = field(default_factory=StabilizerConfig)
    asr: Literal["whisper", "qwen"] = "whisper"
    asr_model: str = "embedded"  # whisper: embedded | CTranslate2 dir | size name
    device: str | None = None
    dtype: str | None = "auto"  # see load_model: the exact fast path on a CPU
    vad: VADConfig | None = field(default_factory=VADConfig)  # None: transcribe every chunk, silence included
    overlap: bool = True  # recognise the next chunk while the last one is translated (two threads)


def load_cascade_asr(config: CascadeConfig):
    """The ASR backend `config` names."""
    from .asr import load_asr

    kw = {"model": config.asr_model} if config.asr == "whisper" else {}
    if config.asr == "whisper" and config.overlap:
        kw["cpu_threads"] = 1  # the other core translates
    return load_asr(config.asr, **kw)


def build_cascade(config: CascadeConfig, *, lm: LoadedModel | None = None, asr=None,
                  on_emit: Callable | None = None):
    """A `SpeechCascade` from `config`; pass an already loaded `lm` / `asr` to share them between cascades."""
    from .cascade import SpeechCascade

    lm = lm or load_model(config.model, device=config.device, dtype=config.dtype)
    translator = build_translator(lm, config.heads, config.src, config.tgt, config.policy, config.translator)
    return SpeechCascade(asr or load_cascade_asr(config), translator, config.src, config.stabilizer, on_emit=on_emit,
                         vad=config.vad, overlap=config.overlap)
