"""Reuse the KV cache of the longest common token prefix between consecutive forwards.

Prompts share long prefixes (the system text or few-shot block; at run time also the source
words already seen), so each forward computes only from the first changed token. The cache
records every position of sliding layers too, so it can be rolled back to any prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token id sequences."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def rollback(cache, n: int) -> bool:
    """Cut a DynamicCache back to its first n positions; False when that is impossible."""
    layers = [layer for layer in cache.layers if getattr(layer, "keys", None) is not None]
    for layer in layers:  # KV-shared consumer layers hold nothing of their own and are skipped
        total = getattr(layer, "cumulative_length", layer.keys.shape[-2])
        if layer.keys.shape[-2] != total or n > total:  # a sliding layer that already dropped positions
            return False
    for layer in layers:
        layer.keys = layer.keys[:, :, :n]
        layer.values = layer.values[:, :, :n]
        if hasattr(layer, "cumulative_length"):
            layer.cumulative_length = n
    return True


class PrefixCache:
    """A DynamicCache plus the token ids it holds; `run` feeds only what differs from the last call."""

    def __init__(self, model):
        self.model = model
        self.cache = None
        self.ids: list[int] = []
        self.reused_tokens = 0
        self.computed_tokens = 0

    def reset(self) -> None:
        self.cache, self.ids = None, []

    def prepare(self, ids: Sequence[int]) -> int:
        """Roll the cache back to the common prefix with `ids` (keeping ≥ 1 token to compute); return its length."""
        from transformers import DynamicCache

        n = min(common_prefix(self.ids, ids), len(ids) - 1)
        if self.cache is None or n <= 0 or not rollback(self.cache, n):
            self.cache = DynamicCache(config=self.model.config)
            self.cache.activate_past_recording()  # sliding layers keep every position, so rollback stays possible
            n = 0
        self.ids = list(ids[:n])
        self.reused_tokens += n
        return n

    def run(self, module, ids: Sequence[int], **kwargs):
        """Forward `ids` through `module` (the LM or its decoder), reusing the cached prefix."""
        n = self.prepare(ids)
        device = next(self.model.parameters()).device
        out = module(input_ids=torch.tensor([list(ids[n:])], device=device), cache=self.cache, use_cache=True,
                     **kwargs)
        self.ids = list(ids)
        self.computed_tokens += len(ids) - n
        return out

    def append(self, token: int) -> None:
        """Record a token fed by the caller directly (step-by-step decoding with `self.cache`)."""
        self.ids.append(token)
        self.computed_tokens += 1
