"""Qwen3-ASR backend: Qwen3-ASR transcribes, Qwen3-ForcedAligner times every word, on transformers 5.x.

Runs the PyPI package `qwen-asr==0.0.6` (installed `--no-deps`: it pins transformers 4.57.6)
through its own code paths (`Qwen3ASRModel.from_pretrained(..., forced_aligner=...)` and
`.transcribe(..., return_time_stamps=True)`), after `apply_compat()` has patched the places where
that code no longer fits transformers 5.24. Three of those failures are silent (wrong tokens,
`!!!!` transcripts, wrong times); each shim below says what it fixes and why. Word units are the
aligner's: whitespace words for spaced languages, single characters for Chinese, nagisa words for
Japanese; `words_from_units` puts the transcript's punctuation back on them.

Exercised offline with tiny random models built from the package's own config classes
(`save_tiny_models`, float32 on CPU): every shim; construction and forward; cached `generate` ==
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

import contextlib
import io
import json
import unicodedata
import warnings
from pathlib import Path

import numpy as np

from .asr import Word, finalize_words
from .audio import SAMPLE_RATE
from .errors import AlignheadsError, ModelSpecError
from .fileio import write_json
from .languages import get_language

QWEN_ASR_VERSION = "0.0.6"
DEFAULT_ASR_MODEL = "Qwen/Qwen3-ASR-1.7B"
DEFAULT_ALIGNER_MODEL = "Qwen/Qwen3-ForcedAligner-0.6B"

_applied = False


# --- compatibility shims (transformers 4.57 -> 5.x) -------------------------------------------------


def _check_model_inputs_factory():
    """4.57's `@check_model_inputs()` was a decorator factory; 5.x split it into two plain decorators."""
    from transformers.utils.generic import merge_with_config_defaults
    from transformers.utils.output_capturing import capture_outputs

    def check_model_inputs(func=None, *, tie_last_hidden_states=True):
        def decorate(f):
            return merge_with_config_defaults(capture_outputs(f, tie_last_hidden_states=tie_last_hidden_states))

        return decorate(func) if func is not None else decorate

    return check_model_inputs


def _allow_package_reregistration() -> None:
    """Let the package register its classes under names transformers (>= 5.13) already owns.

    The package registers `qwen3_asr` -> its own config (and its model/processor for that config)
    at import and again in `Qwen3ForcedAligner.from_pretrained`; 5.x has a native `qwen3_asr` and
    raises. Only registrations of `qwen_asr.*` classes get `exist_ok=True`; the native classes stay
    reachable through their own config class, but the string `qwen3_asr` now means the package's.
    """
    from transformers.models.auto import auto_factory, configuration_auto

    for mapping in (auto_factory._LazyAutoMapping, configuration_auto._LazyConfigMapping):
        register = mapping.register
        if getattr(register, "_alignheads_shim", False):
            continue

        def patched(self, key, value, exist_ok=False, _register=register):
            ours = getattr(value, "__module__", "").startswith("qwen_asr.")
            return _register(self, key, value, exist_ok=exist_ok or ours)

        patched._alignheads_shim = True
        mapping.register = patched


def _import_package():
    """Import qwen_asr with 5.x's decorators in place of `check_model_inputs()` (needed at class creation)."""
    import transformers.utils.generic as generic

    original = generic.check_model_inputs
    generic.check_model_inputs = _check_model_inputs_factory()
    out = io.StringIO()
    try:
        # 5.x's auto_docstring prints "[ERROR] `past_key_values` ... not documented" for the package's
        # forward signatures at import; harmless, so keep it off the user's console.
        with contextlib.redirect_stdout(out):
            import qwen_asr
            from qwen_asr.core.transformers_backend import modeling_qwen3_asr  # noqa: F401
    finally:
        generic.check_model_inputs = original
    noise = [ln for ln in out.getvalue().splitlines() if ln.strip() and not ln.startswith("[ERROR] `")]
    if noise:
        print("\n".join(noise))
    return qwen_asr


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0):
    """The audio encoder's fixed position table, exactly as the package computes it in `__init__`."""
    import torch

    log_timescale_increment = np.log(max_timescale) / (channels // 2 - 1)
    inv_timescales = torch.exp(-log_timescale_increment * torch.arange(channels // 2).float())
    scaled_time = torch.arange(length)[:, np.newaxis] * inv_timescales[np.newaxis, :]
    return torch.cat([torch.sin(scaled_time), torch.cos(scaled_time)], dim=1)


def _patch_configs(C) -> None:
    # Config construction order: 5.x validates a config (which calls `get_text_config()`) inside the
    # base `__init__`, but the package creates `thinker_config` only after calling it -> AttributeError.
    # Build the sub-config first; the package's own `__init__` then rebuilds it identically.
    init = C.Qwen3ASRConfig.__init__

    def config_init(self, thinker_config=None, support_languages=None, **kwargs):
        self.thinker_config = C.Qwen3ASRThinkerConfig(**(thinker_config or {}))
        init(self, thinker_config=thinker_config, support_languages=support_languages, **kwargs)

    C.Qwen3ASRConfig.__init__ = config_init

    # 4.x's PretrainedConfig defaulted `pad_token_id` to None; 5.x has no such attribute, and the
    # package's text model and thinker read `config.pad_token_id` unconditionally.
    C.Qwen3ASRTextConfig.pad_token_id = None
    C.Qwen3ASRThinkerConfig.pad_token_id = None


def _default_rope_parameters(config, device=None, **kwargs):
    """4.x's "default" RoPE init (removed from ROPE_INIT_FUNCTIONS in 5.x): plain inverse frequencies."""
    import torch

    base = config.rope_parameters["rope_theta"]
    dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).to(device=device, dtype=torch.float) / dim))
    return inv_freq, 1.0


def _patch_modeling(M) -> None:
    import torch
    from transformers import initialization as init

    # RoPE: the package looks up ROPE_INIT_FUNCTIONS["default"] (gone in 5.x) when building the
    # rotary embedding, and 5.x's `_init_weights`, which refills the non-persistent `inv_freq` after
    # `from_pretrained`, calls the module's `compute_default_rope_parameters`. Provide both.
    M.ROPE_INIT_FUNCTIONS = {**M.ROPE_INIT_FUNCTIONS, "default": _default_rope_parameters}
    M.Qwen3ASRThinkerTextRotaryEmbedding.compute_default_rope_parameters = staticmethod(_default_rope_parameters)

    # create_causal_mask: 5.x renamed input_embeds -> inputs_embeds and past_key_values -> cache, and
    # dropped cache_position (it reads positions off the cache).
    create_causal_mask = M.create_causal_mask

    def causal_mask(config, input_embeds, attention_mask, cache_position=None, past_key_values=None, **kwargs):
        return create_causal_mask(
            config=config, inputs_embeds=input_embeds, attention_mask=attention_mask, cache=past_key_values, **kwargs
        )

    M.create_causal_mask = causal_mask

    # SILENT (b): the audio encoder's sinusoidal position table is a non-persistent buffer filled in
    # `__init__`. 5.x's from_pretrained builds the model on the meta device and re-initialises only
    # what `_init_weights` knows, so the table stays uninitialised memory: transcripts come out as
    # "!!!!" and aligner times are wrong, with no error. Teach `_init_weights` to refill it.
    base_init_weights = M.Qwen3ASRPreTrainedModel._init_weights

    def init_weights(self, module):
        base_init_weights(self, module)
        if isinstance(module, M.SinusoidsPositionEmbedding):
            init.copy_(module.positional_embedding, sinusoids(*module.positional_embedding.shape))

    M.Qwen3ASRPreTrainedModel._init_weights = init_weights

    # SILENT (a): 5.x's generate() hands the KV cache over as `cache=` with a `next_sequence_length`
    # and no `cache_position`; the package's thinker reads `past_key_values` and `cache_position`.
    # Unfixed it either crashes on `cache_position[0]` or, once that is papered over, builds a fresh
    # cache every step and decodes wrong tokens without an error. Translate back to the 4.x names.
    thinker = M.Qwen3ASRThinkerForConditionalGeneration
    prepare = thinker.prepare_inputs_for_generation

    def prepare_inputs_for_generation(self, input_ids, next_sequence_length=None, cache=None, **kwargs):
        kwargs.pop("past_key_values", None)
        seen = cache.get_seq_length() if cache is not None else 0
        new = next_sequence_length if next_sequence_length is not None else input_ids.shape[1] - seen
        cache_position = torch.arange(seen, seen + new, device=input_ids.device)
        inputs = prepare(
            self,
            input_ids,
            past_key_values=cache,
            cache_position=cache_position,
            next_sequence_length=next_sequence_length,
            **kwargs,
        )
        # the package's super() call lands in 5.x's method, which files the cache under `cache`
        if "cache" in inputs:
            inputs["past_key_values"] = inputs.pop("cache")
        return inputs

    thinker.prepare_inputs_for_generation = prepare_inputs_for_generation

    # Tied embeddings: 5.x wants `_tied_weights_keys` as {target: source} (the package's 4.x list
    # makes save_pretrained raise), and decides from the thinker config's own `tie_word_embeddings`,
    # which the package never sets; 4.x asked the text config. Without keeping 4.x's rule, a
    # checkpoint saved with tied embeddings (no lm_head tensor) would load an uninitialised lm_head.
    thinker._tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}
    expand_tied = thinker.get_expanded_tied_weights_keys

    def get_expanded_tied_weights_keys(self, all_submodels: bool = False) -> dict:
        if all_submodels:
            return expand_tied(self, all_submodels=True)
        tie = getattr(self.config.get_text_config(decoder=True), "tie_word_embeddings", False)
        return dict(self._tied_weights_keys) if tie else {}

    thinker.get_expanded_tied_weights_keys = get_expanded_tied_weights_keys


class _PackageAutoProcessor:
    """Stands in for AutoProcessor inside the package's loaders (see SILENT (c) in `_patch_loaders`)."""

    @staticmethod
    def from_pretrained(path, **kwargs):
        from qwen_asr.core.transformers_backend import Qwen3ASRProcessor

        return Qwen3ASRProcessor.from_pretrained(path, **kwargs)

    @staticmethod
    def register(*args, **kwargs):
        from transformers import AutoProcessor

        return AutoProcessor.register(*args, **kwargs)


def _patch_loaders() -> None:
    # SILENT (c): the checkpoints name their processor "Qwen3ASRProcessor"; 5.x's AutoProcessor
    # resolves that name to transformers' native Qwen3-ASR processor before any registered class,
    # so the package would run with a processor whose prompt expansion and features differ and
    # whose `input_features_mask` its generate() rejects. The package's loaders get a local
    # AutoProcessor that returns the package's own processor; the global AutoProcessor is untouched.
    from qwen_asr.inference import qwen3_asr, qwen3_forced_aligner

    qwen3_asr.AutoProcessor = _PackageAutoProcessor
    qwen3_forced_aligner.AutoProcessor = _PackageAutoProcessor


def apply_compat():
    """Make `qwen_asr` 0.0.6 run correctly on transformers 5.x (idempotent); return the imported package."""
    global _applied
    if _applied:
        import qwen_asr

        return qwen_asr
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("qwen-asr")
    except PackageNotFoundError:
        raise ModelSpecError(
            f"the Qwen3-ASR backend needs `pip install --no-deps qwen-asr=={QWEN_ASR_VERSION}` "
            "(plus nagisa, librosa, soundfile, accelerate)"
        ) from None
    if installed != QWEN_ASR_VERSION:
        raise ModelSpecError(
            f"qwen-asr {installed} is installed, but the compatibility shims were written for {QWEN_ASR_VERSION}"
        )
    _allow_package_reregistration()
    package = _import_package()
    from qwen_asr.core.transformers_backend import configuration_qwen3_asr, modeling_qwen3_asr

    _patch_configs(configuration_qwen3_asr)
    _patch_modeling(modeling_qwen3_asr)
    _patch_loaders()
    _applied = True
    return package


# --- tiny random models (tests, CI, offline demos) --------------------------------------------------

_TINY_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>"]
_TINY_PLAIN = ["<asr_text>", "<timestamp>"]  # plain added tokens: `<asr_text>` must survive skip_special_tokens

# The prompt layout of the Qwen3-ASR checkpoints' chat template:
# <|im_start|>system\n{context}<|im_end|>\n<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|><|im_end|>\n
# <|im_start|>assistant\n
TINY_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'audio' %}<|audio_start|><|audio_pad|><|audio_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _byte_alphabet() -> list[str]:
    """GPT-2's byte -> printable-unicode table, in byte order: the 256 base tokens of a byte-level BPE."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def tiny_processor():
    """The package's Qwen3ASRProcessor over a byte-level Qwen2 tokenizer (no merges) and 128-bin Whisper features."""
    apply_compat()
    from qwen_asr.core.transformers_backend import Qwen3ASRProcessor
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer, WhisperFeatureExtractor

    vocab = {tok: i for i, tok in enumerate(_byte_alphabet())}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "audio_token": "<|audio_pad|>",
            "audio_bos_token": "<|audio_start|>",
            "audio_eos_token": "<|audio_end|>",
        },
    )
    tokenizer.add_tokens([AddedToken(t, special=True) for t in _TINY_SPECIAL], special_tokens=True)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in _TINY_PLAIN])
    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=SAMPLE_RATE)
    return Qwen3ASRProcessor(feature_extractor=features, tokenizer=tokenizer, chat_template=TINY_CHAT_TEMPLATE)


def tiny_config(processor, aligner: bool = False, tie_word_embeddings: bool = False, classify_num: int = 32):
    """A Qwen3-ASR (or forced-aligner) config of the real architecture with tiny widths.

    The aligner classifies each `<timestamp>` into one of `classify_num` 80 ms steps (the real one
    has 5000), so the tiny one never places a word later than (classify_num - 1) * 0.08 s.
    """
    apply_compat()
    from qwen_asr.core.transformers_backend import Qwen3ASRConfig

    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in _TINY_SPECIAL + _TINY_PLAIN}
    thinker = {
        "audio_config": {
            "num_mel_bins": 128,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "d_model": 32,
            "output_dim": 48,
            "downsample_hidden_size": 8,
            "max_source_positions": 1500,
            "n_window": 50,
            "n_window_infer": 800,
        },
        "text_config": {
            "vocab_size": len(tok),
            "hidden_size": 48,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 12,
            "rope_theta": 1000000.0,
            "rope_scaling": {"rope_type": "default", "mrope_section": [2, 2, 2], "interleaved": True},
            "tie_word_embeddings": tie_word_embeddings,
        },
        "audio_token_id": ids["<|audio_pad|>"],
        "audio_start_token_id": ids["<|audio_start|>"],
    }
    languages = ["Chinese", "English", "German", "Italian"]
    if aligner:
        thinker.update(model_type="qwen3_forced_aligner", classify_num=classify_num)
        return Qwen3ASRConfig(
            thinker_config=thinker,
            support_languages=languages,
            timestamp_token_id=ids["<timestamp>"],
            timestamp_segment_time=80.0,
        )
    return Qwen3ASRConfig(thinker_config=thinker, support_languages=languages)


def save_tiny_models(directory: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a tiny random Qwen3-ASR and a tiny forced aligner (with processor files) under `directory`.

    Returns (asr_dir, aligner_dir), loadable with `QwenBackend(asr_model=..., aligner_model=...)`.
    """
    apply_compat()
    import torch
    from qwen_asr.core.transformers_backend import Qwen3ASRForConditionalGeneration

    directory = Path(directory)
    processor = tiny_processor()
    out = []
    for i, name in enumerate(("asr", "aligner")):
        torch.manual_seed(seed + i)
        model = Qwen3ASRForConditionalGeneration(tiny_config(processor, aligner=name == "aligner")).eval()
        model.save_pretrained(directory / name)
        processor.save_pretrained(directory / name)
        out.append(directory / name)
    # config classes serialise their class-level model_type, so the aligner's thinker would reload as a
    # plain ASR thinker (lm_head of vocab size); the released aligner's config.json names it explicitly.
    config_file = out[1] / "config.json"
    config = json.loads(config_file.read_text())
    config["thinker_config"]["model_type"] = "qwen3_forced_aligner"
    write_json(config_file, config)
    return out[0], out[1]


# --- the backend -------------------------------------------------------------------------------------


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
