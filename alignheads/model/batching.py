"""One forward for the next token of several sequences that each keep their own KV cache (batched drafting).

Every sequence (a session's translator) holds a `DynamicCache` of its own length. For one decoding step the caches
are laid side by side, left-padded to the longest, in a batch cache; the step runs once for all of them with an
attention mask that hides the padding and each row's own position ids (rotary embeddings), which is how
transformers decodes left-padded batches; each row's new key and value are then appended to its own cache.
Sliding-window layers stay exact: each row's newest token sits at the right end, so the window over cache indices
is the window over that row's positions. Captures (`AttentionCapture`) record each row's queries and keys as if the
row had run alone (`BatchRecorder`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .capture import PREFIX, AttentionCapture, attach_recorders, detach_recorders


@dataclass
class Step:
    """One sequence's next token: its cache (with `length` positions), the token to feed, and its capture."""

    cache: object  # transformers DynamicCache (past recording on)
    length: int  # positions in the cache (the new token's position)
    token: int
    capture: AttentionCapture | None = None


class BatchRecorder:
    """Stands in for a capture on the attention modules during a batched step: hands row b's query and keys, with
    row b's position ids, to row b's capture."""

    def __init__(self, captures: Sequence[AttentionCapture | None], positions: torch.Tensor):
        self.captures, self.positions = captures, positions

    def record(self, layer: int, query: torch.Tensor, key: torch.Tensor, kwargs: dict) -> None:
        for b, cap in enumerate(self.captures):
            if cap is not None and layer in cap.records:
                cap.record(layer, query[b:b + 1], key[b:b + 1], {**kwargs, "position_ids": self.positions[b:b + 1]})


def _kv_layers(cache) -> list[int]:
    return [i for i, layer in enumerate(cache.layers) if getattr(layer, "keys", None) is not None]


@torch.inference_mode()
def batched_step(lm, steps: Sequence[Step]) -> torch.Tensor:
    """Feed every step's token at once; append each row's new keys/values to its own cache. Returns the decoder's
    last hidden state of every row: [rows, hidden size]."""
    from transformers import DynamicCache

    model, device = lm.model, lm.device
    longest = max(s.length for s in steps)
    batch = DynamicCache(config=model.config)
    batch.activate_past_recording()
    layers = _kv_layers(steps[0].cache)
    for i in layers:
        keys, values = [], []
        for s in steps:
            k, v = s.cache.layers[i].keys, s.cache.layers[i].values
            pad = longest - k.shape[-2]
            keys.append(torch.nn.functional.pad(k, (0, 0, pad, 0)))
            values.append(torch.nn.functional.pad(v, (0, 0, pad, 0)))
        layer = batch.layers[i]
        layer.lazy_initialization(keys[0], values[0])
        layer.keys, layer.values = torch.cat(keys), torch.cat(values)
        if hasattr(layer, "cumulative_length"):
            layer.cumulative_length = longest
    mask = torch.zeros((len(steps), longest + 1), dtype=torch.long, device=device)
    for b, s in enumerate(steps):
        mask[b, longest - s.length:] = 1
    positions = torch.tensor([[s.length] for s in steps], device=device)
    captures = [s.capture for s in steps]
    recorder = BatchRecorder(captures, positions) if any(captures) else None
    wanted = sorted({layer for c in captures if c is not None for layer in c.records})
    previous = attach_recorders(model, recorder, wanted) if recorder is not None else None
    try:
        out = lm.decoder(input_ids=torch.tensor([[s.token] for s in steps], device=device), attention_mask=mask,
                         position_ids=positions, cache=batch, use_cache=True)
    finally:
        if recorder is not None:
            detach_recorders(model, wanted, previous)
    for i in layers:
        new_k, new_v = batch.layers[i].keys[:, :, -1:], batch.layers[i].values[:, :, -1:]
        for b, s in enumerate(steps):
            own = s.cache.layers[i]
            own.keys = torch.cat([own.keys, new_k[b:b + 1]], dim=-2)
            own.values = torch.cat([own.values, new_v[b:b + 1]], dim=-2)
            if hasattr(own, "cumulative_length"):
                own.cumulative_length += 1
    return out.last_hidden_state[:, -1]


__all__ = ["PREFIX", "BatchRecorder", "Step", "batched_step"]
