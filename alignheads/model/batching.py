"""One forward for several sequences that each keep their own KV cache (batched drafting and prefill).

Every sequence (a session's translator) holds a `DynamicCache` of its own length and feeds its own tokens: one
draft token, or a chunk of its prompt. The caches are laid side by side, left-padded to the longest, in a batch
cache, and each row's tokens follow its cache, right-padded to the longest chunk; the forward runs once for all
rows with an attention mask that hides both paddings and each row's own position ids (rotary embeddings), which is
how transformers decodes left-padded batches. Each row's real keys and values are then appended to its own cache.
Sliding-window layers stay exact: a row's real tokens are contiguous, so the window over cache indices is the
window over that row's positions; right padding comes after them, where no real query looks. Captures
(`AttentionCapture`) record each row's queries and keys as if the row had run alone (`BatchRecorder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .capture import PREFIX, AttentionCapture, attach_recorders, detach_recorders


@dataclass
class Step:
    """One sequence's next forward: its cache (with `length` positions), the tokens to feed, how many of their last
    hidden states it wants, and its capture."""

    cache: object  # transformers DynamicCache (past recording on)
    length: int  # positions in the cache (the first new token's position)
    tokens: list[int]
    keep: int = 1
    capture: AttentionCapture | None = None


class BatchRecorder:
    """Stands in for a capture on the attention modules during a batched forward: hands row b's real queries and
    keys (without the right padding), with row b's position ids, to row b's capture."""

    def __init__(self, captures: Sequence[AttentionCapture | None], positions: torch.Tensor, lengths: Sequence[int]):
        self.captures, self.positions, self.lengths = captures, positions, lengths
        self.width = positions.shape[1]

    def record(self, layer: int, query: torch.Tensor, key: torch.Tensor, kwargs: dict) -> None:
        for b, cap in enumerate(self.captures):
            if cap is not None and layer in cap.records:
                # the row's keys end at its last real token and start at its first (or later, in a sliding layer)
                n = self.lengths[b]
                end = key.shape[2] - (self.width - n)
                start = max(0, end - (int(self.positions[b, 0]) + n))
                cap.record(layer, query[b:b + 1, :, :n], key[b:b + 1, :, start:end],
                           {**kwargs, "position_ids": self.positions[b:b + 1, :n]})


def _kv_layers(cache) -> list[int]:
    return [i for i, layer in enumerate(cache.layers) if getattr(layer, "keys", None) is not None]


@torch.inference_mode()
def batched_forward(lm, steps: Sequence[Step]) -> list[torch.Tensor]:
    """Feed every step's tokens at once; append each row's new keys/values to its own cache. Returns each row's
    last `keep` hidden states of the decoder: [keep, hidden size] per step."""
    from transformers import DynamicCache

    model, device = lm.model, lm.device
    longest = max(s.length for s in steps)
    width = max(len(s.tokens) for s in steps)
    batch = DynamicCache(config=model.config)
    batch.activate_past_recording()
    ref = next((s.cache for s in steps if s.length), None)  # a row with a cache (a new session's has none yet)
    for i in _kv_layers(ref) if ref is not None else []:
        keys, values = [], []
        for s in steps:
            own = s.cache.layers[i] if s.length else ref.layers[i]
            k, v = own.keys[:, :, :s.length], own.values[:, :, :s.length]
            pad = longest - k.shape[-2]
            keys.append(torch.nn.functional.pad(k, (0, 0, pad, 0)))
            values.append(torch.nn.functional.pad(v, (0, 0, pad, 0)))
        layer = batch.layers[i]
        layer.lazy_initialization(keys[0], values[0])
        layer.keys, layer.values = torch.cat(keys), torch.cat(values)
        if hasattr(layer, "cumulative_length"):
            layer.cumulative_length = longest
    mask = torch.zeros((len(steps), longest + width), dtype=torch.long, device=device)
    for b, s in enumerate(steps):
        mask[b, longest - s.length:longest + len(s.tokens)] = 1
    positions = torch.stack([s.length + torch.arange(width) for s in steps]).to(device)
    ids = torch.tensor([s.tokens + [s.tokens[-1]] * (width - len(s.tokens)) for s in steps], device=device)
    captures = [s.capture for s in steps]
    recorder = BatchRecorder(captures, positions, [len(s.tokens) for s in steps]) if any(captures) else None
    wanted = sorted({layer for c in captures if c is not None for layer in c.records})
    previous = attach_recorders(model, recorder, wanted) if recorder is not None else None
    try:
        out = lm.decoder(input_ids=ids, attention_mask=mask, position_ids=positions, cache=batch, use_cache=True)
    finally:
        if recorder is not None:
            detach_recorders(model, wanted, previous)
    for i in _kv_layers(batch):
        new_k, new_v = batch.layers[i].keys[:, :, longest:], batch.layers[i].values[:, :, longest:]
        for b, s in enumerate(steps):
            n, own = len(s.tokens), s.cache.layers[i]
            if not own.is_initialized:
                own.lazy_initialization(new_k, new_v)
            own.keys = torch.cat([own.keys, new_k[b:b + 1, :, :n]], dim=-2)
            own.values = torch.cat([own.values, new_v[b:b + 1, :, :n]], dim=-2)
            if hasattr(own, "cumulative_length"):
                own.cumulative_length += n
    hidden = out.last_hidden_state
    return [hidden[b, len(s.tokens) - s.keep:len(s.tokens)] for b, s in enumerate(steps)]


__all__ = ["PREFIX", "BatchRecorder", "Step", "batched_forward"]
