"""SimulStream adapter: run the alignheads cascade unchanged inside the official IWSLT harness.

YAML for `simulstream_inference --speech-processor-config alignheads.yaml ...`:

    type: alignheads.serve.simulstream.AlignheadsSpeechProcessor
    speech_chunk_size: 0.85        # seconds (1.5 for the high-latency regime)
    model: embedded                # or google/gemma-4-E4B-it
    heads: out/demo/translation_heads_gemma-3-270m-Q4_K_M_en-de.json   # or "published"
    policy: alignatt
    asr: whisper                   # or qwen
    holdback: 0.25                 # seconds of ASR tail shown but not yet accessible
    border: -2                     # any translator setting: the `alignheads translate` flag names (wait_k, ...)
    preset: paper                  # optional: named settings (alignheads.speech.presets.PRESETS), overridden here
    source_lang: en
    target_lang: de

Output is append-only, so `deleted_tokens` is always empty; tokens are target units (words, or
characters for Chinese/Japanese).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from simulstream.server.speech_processors import SpeechProcessor
from simulstream.server.speech_processors.incremental_output import IncrementalOutput

from ..base.languages import get_language
from ..model.loader import load_model
from ..speech.cascade import SpeechCascade
from ..speech.pipeline import SETTINGS, CascadeConfig, build_cascade, configure_translator, load_cascade_asr
from ..speech.stabilizer import StabilizerConfig


class AlignheadsSpeechProcessor(SpeechProcessor):
    """`SpeechProcessor` over `SpeechCascade` (streaming ASR + AlignAtt translation)."""

    _lm = None
    _asr = None

    @classmethod
    def load_model(cls, config: SimpleNamespace) -> None:
        cls._lm = load_model(getattr(config, "model", "embedded"))
        cls._asr = load_cascade_asr(CascadeConfig(asr=getattr(config, "asr", "whisper"),
                                                  asr_model=getattr(config, "asr_model", "embedded")))

    def __init__(self, config: SimpleNamespace):
        super().__init__(config)
        if self._lm is None:
            type(self).load_model(config)
        self.src_lang = getattr(config, "source_lang", "en")
        self.tgt_lang = getattr(config, "target_lang", "de")
        self.cascade: SpeechCascade | None = None

    def _build(self) -> SpeechCascade:
        cfg = self.config
        translator = configure_translator(CascadeConfig().translator, getattr(cfg, "preset", None),
                                          **{k: getattr(cfg, k, None) for k in SETTINGS})
        config = CascadeConfig(heads=getattr(cfg, "heads", "published"), src=self.src_lang, tgt=self.tgt_lang,
                               policy=getattr(cfg, "policy", "alignatt"), translator=translator,
                               stabilizer=StabilizerConfig(chunk_ms=int(round(self.speech_chunk_size * 1000))))
        return build_cascade(config, lm=self._lm, asr=self._asr)

    def _output(self, units: list[str]) -> IncrementalOutput:
        return IncrementalOutput(units, self.tokens_to_string(units), [], "")

    def process_chunk(self, waveform: np.float32) -> IncrementalOutput:
        if self.cascade is None:
            self.cascade = self._build()
        return self._output([e.text for e in self.cascade.process_chunk(waveform)])

    def end_of_stream(self) -> IncrementalOutput:
        if self.cascade is None:
            return self._output([])
        return self._output([e.text for e in self.cascade.finish()])

    def set_source_language(self, language: str) -> None:
        self.src_lang = get_language(language).code
        self.cascade = None

    def set_target_language(self, language: str) -> None:
        self.tgt_lang = get_language(language).code
        self.cascade = None

    def tokens_to_string(self, tokens: list[str]) -> str:
        return (" " if get_language(self.tgt_lang).spaced else "").join(tokens)

    def clear(self) -> None:
        self.cascade = None
