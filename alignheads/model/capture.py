"""Capture the post-norm, post-RoPE queries and keys attention consumes, without changing a single output bit.

We register an attention implementation `alignheads+<base>` that records `query`/`key` for the
wanted layers and then calls the base kernel (SDPA, eager or flash) with the very same tensors,
plus the base's mask function under the same name, so the model builds the mask it always
builds. Nothing is recomputed and no kernel is replaced: logits are bit-identical.

Keys arrive after the cache update (the whole history for full layers, window + new tokens for
sliding ones, the producer's keys for Gemma-4's KV-shared layers) and always end at the last
query's position, so appending the unseen tail gives every layer's keys by absolute position.

One pitfall: Gemma-4 skips its KV-shared layers for prompt positions whose logits are not asked for when
`logits_to_keep` is an integer, and it knows that this shortcut is not causal under SDPA only by the
implementation's name ("sdpa"): under "alignheads+sdpa" an integer `logits_to_keep` > 1 gives wrong logits
(measured: 0.2 off on the tiny Gemma-4). Ask for several rows by index, or run the decoder (the translator does).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from .loader import attention_modules
from .qk import attention_probs

PREFIX = "alignheads+"
_registered: set[str] = set()


def _register(base: str) -> str:
    """Register the recording wrapper around attention implementation `base`; return its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = PREFIX + base
    if name in _registered:
        return name
    if base == "eager":
        # Each model family defines its own eager_attention_forward; call the module's.
        def base_fn(module, *args, **kwargs):
            return sys.modules[type(module).__module__].eager_attention_forward(module, *args, **kwargs)

    else:
        base_fn = ALL_ATTENTION_FUNCTIONS[base]

    def recording_attention(module, query, key, value, attention_mask, *args, **kwargs):
        rec = getattr(module, "_alignheads_recorder", None)
        if rec is not None:
            rec.record(module.layer_idx, query, key, kwargs)
        return base_fn(module, query, key, value, attention_mask, *args, **kwargs)

    AttentionInterface.register(name, recording_attention)
    mask_base = "sdpa" if base not in ALL_MASK_ATTENTION_FUNCTIONS else base
    AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[mask_base])
    _registered.add(name)
    return name


def _own(t: torch.Tensor) -> torch.Tensor:
    """A detached tensor that does not keep a larger parent (a whole query block, a whole KV cache) alive."""
    t = t.detach()
    return t.clone() if t.untyped_storage().nbytes() > t.numel() * t.element_size() else t


def attach_recorders(model, recorder, layers: Iterable[int]) -> str | None:
    """Switch `model` to the recording attention of its implementation and hang `recorder` on `layers`' attention
    modules; returns the implementation to restore (None when it was already the recording one)."""
    impl = model.config._attn_implementation
    base = impl[len(PREFIX):] if impl.startswith(PREFIX) else impl
    name = _register(base)
    modules = _modules(model)
    for layer in layers:
        modules[layer]._alignheads_recorder = recorder
    if impl != name:
        model.set_attn_implementation(name)
        return impl
    return None


def _modules(model) -> list:
    """The model's attention modules by layer, found once per model."""
    if getattr(model, "_alignheads_modules", None) is None:
        model._alignheads_modules = attention_modules(model)
    return model._alignheads_modules


def detach_recorders(model, layers: Iterable[int], previous: str | None) -> None:
    """Undo `attach_recorders`."""
    modules = _modules(model)
    for layer in layers:
        modules[layer]._alignheads_recorder = None
    if previous is not None:
        model.set_attn_implementation(previous)


@dataclass
class LayerRecord:
    """Queries and keys of one layer, by absolute position; plus the kernel arguments to replay with."""

    queries: list[torch.Tensor] = field(default_factory=list)  # chunks of (B, H, n, D)
    q_positions: list[torch.Tensor] = field(default_factory=list)  # absolute positions of kept queries
    keys: list[torch.Tensor] = field(default_factory=list)  # chunks of (B, H_kv, n, D), contiguous positions
    key_start: int = 0  # absolute position of the first stored key
    key_end: int = 0  # one past the last stored key
    scaling: float = 1.0
    sliding_window: int | None = None
    softcap: float | None = None


class AttentionCapture:
    """Context manager recording q/k of chosen layers while the model runs normally.

    `q_from` drops queries before that absolute position (e.g. the prompt, when only a draft's
    rows are wanted). Records are cleared on every `__enter__` and by `reset()`.

    Streaming mode: with `on_rows(layer, rows, positions)`, each layer's attention rows for the kept
    queries (all heads, float32 (B, H, n, T)) are computed inside the forward, from the very tensors
    the kernel gets, and handed over; nothing is stored, so the attention data alive at any time is
    one layer's rows. Meant for single full forwards (teacher forcing), where the keys are complete.
    """

    def __init__(self, model, layers: Iterable[int] | None = None, q_from: int = 0,
                 on_rows: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None):
        self.model = model
        self.modules = attention_modules(model)
        self.layers = sorted(set(range(len(self.modules)) if layers is None else layers))
        bad = [layer for layer in self.layers if not 0 <= layer < len(self.modules)]
        if bad:
            raise ValueError(f"layers {bad} out of range: the model has {len(self.modules)} layers")
        self.q_from = q_from
        self.on_rows = on_rows
        self.records: dict[int, LayerRecord] = {}
        self._previous_impl: str | None = None

    def reset(self, q_from: int | None = None) -> None:
        """Drop everything recorded (buffers are released, nothing accumulates across calls)."""
        if q_from is not None:
            self.q_from = q_from
        self.records = {layer: LayerRecord() for layer in self.layers}

    def record(self, layer: int, query: torch.Tensor, key: torch.Tensor, kwargs: dict) -> None:
        rec = self.records[layer]
        n, k_len = query.shape[2], key.shape[2]
        if self.on_rows is not None:
            self._stream(layer, query, key, kwargs)
            return
        pos_ids = kwargs.get("position_ids")
        # Queries are the last n positions; keys end at the last query (the cache is already updated).
        # Gemma-4's KV-shared layers see only the final query during prefill, hence position_ids.
        end = int(pos_ids[0, -1]) + 1 if pos_ids is not None else rec.key_end + n
        start = end - k_len
        if start > rec.key_end or not rec.keys:  # first call, or a cache reused from before capture
            rec.keys, rec.key_start, rec.key_end = [], start, start
        if end > rec.key_end:
            rec.keys.append(_own(key[:, :, k_len - (end - rec.key_end) :]))
            rec.key_end = end
        rec.scaling = kwargs.get("scaling") if kwargs.get("scaling") is not None else query.shape[-1] ** -0.5
        rec.sliding_window = kwargs.get("sliding_window")
        rec.softcap = kwargs.get("softcap")
        keep = max(0, self.q_from - (end - n))
        if keep < n:
            rec.queries.append(_own(query[:, :, keep:]))
            rec.q_positions.append(torch.arange(end - n + keep, end))

    def _stream(self, layer: int, query: torch.Tensor, key: torch.Tensor, kwargs: dict) -> None:
        n, k_len = query.shape[2], key.shape[2]
        pos_ids = kwargs.get("position_ids")
        end = int(pos_ids[0, -1]) + 1 if pos_ids is not None else k_len
        keep = max(0, self.q_from - (end - n))
        if keep >= n:
            return
        positions = torch.arange(end - n + keep, end)
        group = query.shape[1] // key.shape[1]
        scaling = kwargs.get("scaling") if kwargs.get("scaling") is not None else query.shape[-1] ** -0.5
        rows = torch.stack([
            attention_probs(query[b, :, keep:], key[b].repeat_interleave(group, dim=0), positions, end - k_len,
                            scaling, kwargs.get("softcap"), kwargs.get("sliding_window"))
            for b in range(query.shape[0])
        ])
        self.on_rows(layer, rows, positions)

    def __enter__(self) -> AttentionCapture:
        self.reset()
        self.attach()
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def attach(self) -> None:
        """Start recording into what is already recorded (`__enter__` also clears it first)."""
        self._previous_impl = attach_recorders(self.model, self, self.layers)

    def detach(self) -> None:
        """Stop recording; the record stays readable."""
        detach_recorders(self.model, self.layers, self._previous_impl)
        self._previous_impl = None

    def truncate(self, end: int) -> None:
        """Forget every key and query at absolute position >= `end`, as when the KV cache is rolled back to its
        first `end` positions (rejected guessed tokens): the next forward appends its keys from `end` on, so replay
        never reads a rejected token's key."""
        for rec in self.records.values():
            if rec.keys and rec.key_end > end:
                keys = torch.cat(rec.keys, dim=2)[:, :, : max(0, end - rec.key_start)]
                rec.keys = [keys] if keys.shape[2] else []
                rec.key_end = max(rec.key_start, min(rec.key_end, end))
            if rec.queries:
                q, pos = torch.cat(rec.queries, dim=2), torch.cat(rec.q_positions)
                keep = pos < end
                rec.queries = [q[:, :, keep]] if bool(keep.any()) else []
                rec.q_positions = [pos[keep]] if bool(keep.any()) else []

    # --- reading the record -------------------------------------------------------------------
    def queries(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All kept queries of `layer` as (B, H, n, D) and their absolute positions (n,)."""
        rec = self._rec(layer)
        if not rec.queries:
            raise ValueError(f"no queries recorded for layer {layer} (q_from={self.q_from}, keys up to {rec.key_end})")
        if len(rec.queries) > 1:  # consolidate so repeated reads don't re-concatenate
            rec.queries = [torch.cat(rec.queries, dim=2)]
            rec.q_positions = [torch.cat(rec.q_positions)]
        return rec.queries[0], rec.q_positions[0]

    def keys(self, layer: int) -> tuple[torch.Tensor, int]:
        """Stored keys of `layer`, (B, H_kv, n, D), and the absolute position of the first one."""
        rec = self._rec(layer)
        if not rec.keys:
            raise ValueError(f"no keys recorded for layer {layer}")
        if len(rec.keys) > 1:
            rec.keys = [torch.cat(rec.keys, dim=2)]
        return rec.keys[0], rec.key_start

    def _rec(self, layer: int) -> LayerRecord:
        if layer not in self.records:
            raise KeyError(f"layer {layer} was not captured (captured: {self.layers})")
        return self.records[layer]

    def nbytes(self) -> int:
        """Bytes held by the recorded tensors."""
        return sum(t.numel() * t.element_size() for r in self.records.values() for t in (*r.queries, *r.keys))
