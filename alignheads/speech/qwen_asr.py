"""Qwen3-ASR backend: Qwen3-ASR transcribes, Qwen3-ForcedAligner times every word, on transformers 5.x.

Runs the PyPI package `qwen-asr==0.0.6` (installed `--no-deps`: it pins transformers 4.57.6)
through its own code paths (`Qwen3ASRModel.from_pretrained(..., forced_aligner=...)` and
`.transcribe(..., return_time_stamps=True)`), after `alignheads.speech.qwen_compat.apply_compat()` has
patched the places where that code no longer fits transformers 5.24. Word units are the
aligner's: whitespace words for spaced languages, single characters for Chinese, nagisa words for
Japanese; `words_from_units` puts the transcript's punctuation back on them.

Exercised offline with tiny random models built from the package's own config classes
(`alignheads.speech.tiny_asr.save_tiny_qwen_models`, float32 on CPU): every shim; construction and forward;
cached `generate` ==
uncached `generate` == a greedy loop of full forwards; `save_pretrained` -> `from_pretrained`
(bit-identical logits, sinusoid table and RoPE frequencies restored, tied and untied embeddings);
the package's processor, chat-template prompt and `language X<asr_text>` forcing; the package's
`Qwen3ForcedAligner.align` (timestamp classes, its monotonicity repair); `QwenBackend.transcribe`
end to end (Word structure, absolute times, the transcript's characters kept). The zh and ja unit
mapping is tested on the package's own text splitting (nagisa for ja), not through a model.
Not exercised (no weights offline, no GPU here): transcript quality and the real aligner's
accuracy; the real tokenizer, chat template and config values (RoPE sections, whether embeddings
are tied); bf16 / CUDA numerics and speed. Audio longer than the package's 180 s alignment window
is split by the package and its chunk texts joined without a space (streaming buffers are shorter).
"""

from __future__ import annotations

import unicodedata
import warnings

import numpy as np

from ..base.errors import AlignheadsError, ModelSpecError
from ..base.languages import get_language
from .asr import Word, finalize_words
from .audio import SAMPLE_RATE
from .qwen_compat import apply_compat

DEFAULT_ASR_MODEL = "Qwen/Qwen3-ASR-1.7B"
DEFAULT_ALIGNER_MODEL = "Qwen/Qwen3-ForcedAligner-0.6B"


def _kept(ch: str) -> bool:
    """The forced aligner's notion of a word character (letters, digits, apostrophe); all else is dropped."""
    return ch == "'" or unicodedata.category(ch)[0] in "LN"


def words_from_units(text: str, units: list[tuple[str, float, float]], spaced: bool) -> list[tuple[str, float, float]]:
    """Put the transcript's punctuation back onto the aligner's timed units.

    The aligner times `units` (words, or single CJK characters) with punctuation stripped; the
    stabiliser needs it (sentence ends). Spaced languages get one entry per whitespace token of
    `text` (a punctuation-only token joins the previous word); unspaced ones one per unit, carrying
    the punctuation that follows it. Characters are matched after NFKC (nagisa turns "２" into "2").
    If the units do not spell out `text`'s word characters, the units are returned as they are.
    """
    # (normalised character, index into text) for every word character of text
    kept = [(c, i) for i, ch in enumerate(text) for c in unicodedata.normalize("NFKC", ch) if _kept(c)]
    spelled = [(c, k) for k, (u, _, _) in enumerate(units) for c in unicodedata.normalize("NFKC", u) if _kept(c)]
    if [c for c, _ in kept] != [c for c, _ in spelled]:
        warnings.warn(f"aligner units do not spell the transcript {text!r}; words keep no punctuation", stacklevel=2)
        return list(units)
    owner: list[int | None] = [None] * len(text)
    for (_, i), (_, k) in zip(kept, spelled, strict=True):
        if owner[i] is None:
            owner[i] = k

    out: list[list] = []  # [text, first unit, last unit]
    pending = ""  # punctuation seen before the first word
    if spaced:
        pos = 0
        for token in text.split():
            start = text.index(token, pos)
            pos = start + len(token)
            ks = [owner[i] for i in range(start, pos) if owner[i] is not None]
            if not ks:
                if out:
                    out[-1][0] += " " + token
                else:
                    pending += token + " "
                continue
            out.append([pending + token, ks[0], ks[-1]])
            pending = ""
    else:
        for i, ch in enumerate(text):
            if owner[i] is not None and (not out or out[-1][2] != owner[i]):
                out.append([pending + ch, owner[i], owner[i]])
                pending = ""
            elif ch.isspace():
                continue
            elif out:
                out[-1][0] += ch
            else:
                pending += ch
    return [(t, units[a][1], units[b][2]) for t, a, b in out]


def _torch_dtype(dtype, device: str):
    import torch

    if dtype is None:
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise AlignheadsError(f"unknown torch dtype {dtype!r} (use e.g. 'float32', 'bfloat16')")
        return getattr(torch, dtype)
    return dtype


class QwenBackend:
    """Qwen3-ASR transcript, Qwen3-ForcedAligner word times (per character for Chinese), via `qwen-asr`.

    `asr_model` / `aligner_model` are hub ids or local directories. `context` is the system-prompt
    text the package passes to the recogniser (e.g. names and terms). Stateless between calls.
    """

    def __init__(
        self,
        asr_model: str = DEFAULT_ASR_MODEL,
        aligner_model: str = DEFAULT_ALIGNER_MODEL,
        *,
        device: str | None = None,
        dtype=None,
        max_new_tokens: int = 256,
        context: str = "",
    ):
        apply_compat()
        import torch
        from qwen_asr import Qwen3ASRModel

        if max_new_tokens < 1:
            raise AlignheadsError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = _torch_dtype(dtype, self.device)
        self.context = context
        load = {"dtype": self.dtype, "device_map": self.device}
        try:
            self.model = Qwen3ASRModel.from_pretrained(
                asr_model,
                forced_aligner=aligner_model,
                forced_aligner_kwargs=load,
                max_inference_batch_size=1,
                max_new_tokens=max_new_tokens,
                **load,
            )
        except (OSError, ValueError, TypeError) as e:  # missing/offline hub ids, wrong kind of checkpoint
            raise ModelSpecError(f"cannot load Qwen3-ASR {asr_model!r} with aligner {aligner_model!r}: {e}") from None
        self.aligner_languages = self.model.forced_aligner.get_supported_languages()

    def transcribe(self, audio: np.ndarray, language: str, offset: float = 0.0) -> list[Word]:
        """Words of `audio` (float32 mono 16 kHz, starting at `offset` s on the stream clock), absolute times."""
        lang = get_language(language)
        if lang.qwen is None:
            raise AlignheadsError(f"Qwen3-ASR does not support language {language!r}")
        if self.aligner_languages is not None and lang.qwen.lower() not in self.aligner_languages:
            raise AlignheadsError(
                f"the forced aligner does not support {lang.name}; it supports {', '.join(self.aligner_languages)}"
            )
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise AlignheadsError(f"audio must be mono (1-D), got shape {audio.shape}")
        if audio.size == 0:
            return []
        if not np.isfinite(audio).all():
            raise AlignheadsError("audio contains NaN or infinite samples")
        result = self.model.transcribe(
            audio=(audio, SAMPLE_RATE), context=self.context, language=lang.qwen, return_time_stamps=True
        )[0]
        if result.time_stamps is None:
            return []
        units = [(it.text, it.start_time, it.end_time) for it in result.time_stamps]
        raw = words_from_units(result.text, units, spaced=lang.spaced)
        return finalize_words(raw, offset, audio.size / SAMPLE_RATE)
