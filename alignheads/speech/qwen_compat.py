"""Compatibility shims that make the PyPI package `qwen-asr==0.0.6` run correctly on transformers 5.x.

The package pins transformers 4.57.6 and is installed `--no-deps`. Three of the failures these shims
fix are silent (the KV cache handed to `generate` as `cache=` is ignored -> wrong tokens; the audio
encoder's sinusoid buffer left uninitialised after `from_pretrained` -> `!!!!` transcripts and wrong
times; `AutoProcessor` resolving to transformers' native processor); each shim says what it fixes.
`apply_compat()` applies them once and returns the imported package.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from ..base.errors import ModelSpecError

QWEN_ASR_VERSION = "0.0.6"

_applied = False



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
