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
    """A DynamicCache plus the token ids it holds; `run` feeds only what differs from the last call.

    With an `anchor` (token ids every input starts with, e.g. a layout's fixed prompt head), only the
    anchor is ever reused: it is computed once on its own, so every input is computed from the very same
    cached state whatever came before it (results do not depend on order or sharding).
    """

    def __init__(self, model, anchor: Sequence[int] | None = None):
        self.model = model
        self.anchor = list(anchor) if anchor is not None else None
        self.cache = None
        self.ids: list[int] = []

    def reset(self) -> None:
        self.cache, self.ids = None, []

    def _new_cache(self):
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        cache.activate_past_recording()  # sliding layers keep every position, so rollback stays possible
        return cache

    def prepare(self, ids: Sequence[int], keep_from: int | None = None, module=None) -> int:
        """Roll the cache back to the reusable prefix of `ids` (never past `keep_from`, and keeping ≥ 1 token
        to compute); return its length."""
        limit = len(ids) - 1 if keep_from is None else min(len(ids) - 1, keep_from)
        if self.anchor is not None:
            if self.cache is None or self.ids[: len(self.anchor)] != self.anchor:
                self.cache, self.ids = self._new_cache(), []
                if len(self.anchor) > 1 and module is not None:
                    self._forward(module, self.anchor, 0)
            n = min(common_prefix(self.anchor, ids), limit)
        else:
            n = min(common_prefix(self.ids, ids), limit)
        if self.cache is None or n <= 0 or not rollback(self.cache, n):
            self.cache, n = self._new_cache(), 0
        self.ids = list(ids[:n])
        return n

    def _forward(self, module, ids: Sequence[int], n: int, **kwargs):
        device = next(self.model.parameters()).device
        out = module(input_ids=torch.tensor([list(ids[n:])], device=device), cache=self.cache, use_cache=True,
                     **kwargs)
        self.ids = list(ids)
        return out

    def run(self, module, ids: Sequence[int], keep_from: int | None = None, **kwargs):
        """Forward `ids` through `module` (the LM or its decoder), reusing the cached prefix; positions from
        `keep_from` on are always computed (so a capture sees their queries)."""
        n = self.prepare(ids, keep_from, module)
        return self._forward(module, ids, n, **kwargs)
