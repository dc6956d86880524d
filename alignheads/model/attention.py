"""qk-fast replay: recompute chosen heads' attention rows from captured q/k, and pool them to words.

For head h of layer l and query positions P, the rows are
`softmax(scaling · q[l, h, P] · k[l, kv(h)]ᵀ + causal/sliding mask)` (with tanh soft-capping when
the model uses it), exactly the weights the model applied. Cost: heads × |P| × T, instead of
layers × heads × T² for `output_attentions`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .capture import AttentionCapture
from .qk import attention_probs


def replay_rows(
    cap: AttentionCapture,
    layer: int,
    heads: Sequence[int] | None = None,
    positions: Sequence[int] | torch.Tensor | None = None,
    batch: int = 0,
) -> torch.Tensor:
    """Attention rows of `heads` of `layer` at absolute query `positions`: float32 (n_heads, n_pos, T).

    Column j is key position j; the rows are the weights the model applied, not renormalised.
    """
    q_all, q_pos = cap.queries(layer)
    k_all, k_start = cap.keys(layer)
    k = k_all[batch]  # (H_kv, n_keys, D)
    n_heads, n_kv = q_all.shape[1], k.shape[0]
    heads = list(range(n_heads)) if heads is None else list(heads)
    if positions is None:
        idx = torch.arange(len(q_pos))
        pos = q_pos
    else:
        pos = torch.as_tensor(positions, dtype=torch.long)
        lookup = {int(p): i for i, p in enumerate(q_pos)}
        missing = [int(p) for p in pos if int(p) not in lookup]
        if missing:
            raise ValueError(f"query positions {missing[:5]} of layer {layer} were not captured")
        idx = torch.tensor([lookup[int(p)] for p in pos], dtype=torch.long)
    q = q_all[batch][heads][:, idx]  # (h, n, D)
    kv = k[[h // (n_heads // n_kv) for h in heads]]  # (h, T, D)
    rec = cap.records[layer]
    lowest = pos if rec.sliding_window is None else pos - rec.sliding_window + 1
    if k_start > 0 and bool((lowest.clamp(min=0) < k_start).any()):
        raise ValueError(f"layer {layer}: keys before position {k_start} were not captured")
    return attention_probs(q, kv, pos, k_start, rec.scaling, rec.softcap, rec.sliding_window)


def pool_source_words(rows: torch.Tensor, src_tokens: Sequence[Sequence[int]]) -> torch.Tensor:
    """Attention on each source word = sum over its tokens: (..., T) -> (..., n_words)."""
    cols = [rows[..., list(toks)].sum(-1) for toks in src_tokens]
    return torch.stack(cols, dim=-1) if cols else rows.new_zeros((*rows.shape[:-1], 0))


def word_query_positions(tgt_tokens: Sequence[Sequence[int]], emitting: bool = False) -> list[int]:
    """The query position of each target word: its first token, or the position that emits it (one earlier)."""
    return [min(toks) - (1 if emitting else 0) for toks in tgt_tokens]
