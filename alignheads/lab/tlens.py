"""Optional TransformerLens bridge: the same model as a `TransformerBridge`, and a check that its
`blocks.{l}.attn.hook_pattern` equals the rows alignheads replays from captured q/k.

transformer-lens >= 4 has no HookedTransformer; `TransformerBridge.boot_transformers(name, hf_model=,
tokenizer=)` wraps a loaded HF model. Three things make sharing the objects unsafe, so the bridge
always gets its own deep copies: it switches the model to eager attention for good (a bridged HF
model then no longer returns attentions through our capture path), it rewrites tokenizer settings,
and booting a multimodal class makes it `pip install torchvision` by itself. Multimodal classes are
refused before anything is booted, and the auto-install is disabled while booting as a second guard.

Install (optional extra, everything pinned, `--no-deps` so no other torch arrives):
`pip install --no-deps transformer-lens==4.3.0 einops==0.8.2 jaxtyping==0.3.11 wadler-lindig==0.1.8`
and `pip install datasets==5.2.0 pyarrow==26.0.1 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0`
(transformer_lens imports `datasets` at package import time).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..base.errors import AlignheadsError
from ..corpus.pairs import SentencePair
from ..heads.headset import Head
from ..model.loader import LoadedModel
from ..model.prompts import PromptLayout, RenderedPrompt

INSTALL_HINT = (
    "pip install --no-deps transformer-lens==4.3.0 einops==0.8.2 jaxtyping==0.3.11 wadler-lindig==0.1.8 && "
    "pip install datasets==5.2.0 pyarrow==26.0.1 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0"
)


class BridgeError(AlignheadsError):
    """TransformerLens is missing, or the model cannot be bridged safely."""


def available() -> bool:
    """True when transformer-lens (>= 4, with TransformerBridge) and its imports are installed."""
    if importlib.util.find_spec("transformer_lens") is None:
        return False
    try:
        _bridge_class()
    except BridgeError:
        return False
    return True


def _bridge_class():
    """`TransformerBridge`, imported without leaving transformers' log level changed (TL lowers it on import)."""
    import transformers

    level = transformers.logging.get_verbosity()
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError as e:
        raise BridgeError(f"TransformerLens bridge unavailable ({e}); install it with: {INSTALL_HINT}") from e
    finally:
        transformers.logging.set_verbosity(level)
    return TransformerBridge


def unavailable_reason(lm: LoadedModel) -> str | None:
    """Why `boot_bridge(lm)` cannot run here (transformer-lens missing, a multimodal class), or None when it can."""
    if is_multimodal(lm.model):
        return (f"{lm.facts.model_id} is loaded as the multimodal class {type(lm.model).__name__}; the TransformerLens "
                "bridge is only booted on text-only causal LMs")
    if not available():
        return f"transformer-lens is not installed (optional): {INSTALL_HINT}"
    return None


def is_multimodal(model) -> bool:
    """True when `model` is a multimodal class (its text config is a sub-config, or it has vision/audio parts)."""
    cfg = model.config
    return (
        cfg.get_text_config() is not cfg
        or any(getattr(cfg, name, None) is not None for name in ("vision_config", "audio_config"))
    )


@contextlib.contextmanager
def _no_auto_install() -> Iterator[None]:
    """While booting, make TransformerLens's on-the-fly `pip install torchvision` a refusal instead."""
    try:
        from transformer_lens.model_bridge.sources.transformers import helpers
    except ImportError:  # layout changed: the multimodal refusal above is then the only guard
        yield
        return
    original = getattr(helpers, "_ensure_torchvision", None)
    if original is None:
        yield
        return
    helpers._ensure_torchvision = lambda: False
    try:
        yield
    finally:
        helpers._ensure_torchvision = original


def boot_bridge(lm: LoadedModel, *, device: str | torch.device | None = None):
    """A `TransformerBridge` over a deep copy of `lm`'s model and tokenizer (`lm` itself is left untouched).

    Refuses multimodal classes (e.g. Gemma-4 *-it loaded through the image-text-to-text class).
    Drive the bridge with token ids from alignheads' prompts, not with its own string tokenisation.
    """
    if is_multimodal(lm.model):
        raise BridgeError(
            f"{lm.facts.model_id}: {type(lm.model).__name__} is a multimodal class; alignheads never boots "
            "TransformerLens on one (TransformerLens would pip-install torchvision). Bridge a text-only "
            "causal LM instead."
        )
    bridge_cls = _bridge_class()
    model = copy.deepcopy(lm.model)  # the bridge forces eager attention on what it is given
    if not getattr(model.config, "architectures", None):  # models built from a config (not loaded) lack it
        model.config.architectures = [type(model).__name__]
    tokenizer = copy.deepcopy(lm.tokenizer)
    # Without these TL re-loads the tokenizer from `name_or_path` (disk or hub) to add a BOS token;
    # the bridge is fed our own token ids, so its string tokenisation never matters.
    tokenizer.init_kwargs.setdefault("name_or_path", lm.facts.model_id)
    tokenizer.init_kwargs["add_bos_token"] = True
    with _no_auto_install():
        try:
            return bridge_cls.boot_transformers(
                lm.facts.model_id, hf_model=model, tokenizer=tokenizer, device=str(device or lm.device),
                dtype=next(lm.model.parameters()).dtype,
            )
        except ValueError as e:
            raise BridgeError(f"TransformerLens cannot bridge {lm.facts.model_id} "
                              f"({type(lm.model).__name__}): {e}") from e


@torch.no_grad()
def hook_patterns(bridge, input_ids: Sequence[int], layers: Sequence[int]) -> dict[int, torch.Tensor]:
    """`blocks.{l}.attn.hook_pattern` of each layer on one sequence: {layer: float32 [heads, T, T]}."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in layers]
    missing = [n for n in names if n not in bridge.hook_dict]
    if missing:
        raise BridgeError(f"the bridge has no hook(s) {missing[:3]}")
    ids = torch.tensor([list(input_ids)], device=bridge.cfg.device)
    _, cache = bridge.run_with_cache(ids, names_filter=lambda name: name in names)
    return {layer: cache[name][0].float().cpu() for layer, name in zip(layers, names, strict=True)}


def compare_patterns(
    lm: LoadedModel,
    bridge,
    prompt: RenderedPrompt,
    heads: Sequence[tuple[int, int] | Head],
    positions: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Per head: max |TransformerLens hook_pattern − alignheads replay| over the rows at `positions`
    (default: every target token), and whether both put each row's argmax on the same key."""
    from ..heads.scoring import pair_rows

    heads = [(h.layer, h.head) if isinstance(h, Head) else (int(h[0]), int(h[1])) for h in heads]
    if not heads:
        raise BridgeError("compare_patterns: no heads given")
    if positions is None:
        positions = sorted({t for toks in prompt.tgt_tokens for t in toks}) or [len(prompt) - 1]
    positions = list(positions)
    layers = sorted({layer for layer, _ in heads})
    ours = pair_rows(lm, prompt, positions, layers)  # [len(layers), H, n, T]
    theirs = hook_patterns(bridge, prompt.input_ids, layers)
    rows: list[dict[str, Any]] = []
    for layer, head in heads:
        a = ours[layers.index(layer), head]
        b = theirs[layer][head, positions]
        rows.append({
            "layer": layer, "head": head, "rows": len(positions),
            "max_abs_diff": float((a - b).abs().max()),
            "argmax_agree": float(np.mean((a.argmax(-1) == b.argmax(-1)).numpy())),
        })
    return pd.DataFrame(rows)


def compare_on_pair(lm: LoadedModel, bridge, pair: SentencePair, heads: Sequence[tuple[int, int] | Head],
                    layout: PromptLayout) -> pd.DataFrame:
    """`compare_patterns` on a sentence pair's teacher-forced prompt in `layout` (e.g. the run-time layout)."""
    from ..heads.scoring import teacher_forced_prompt

    return compare_patterns(lm, bridge, teacher_forced_prompt(lm, layout, pair), heads)
