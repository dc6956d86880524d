"""Attention probabilities from queries and keys: the one formula capture and replay both use."""

from __future__ import annotations

import torch


def attention_probs(q: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor, k_start: int, scaling: float,
                    softcap: float | None = None, sliding_window: int | None = None) -> torch.Tensor:
    """`softmax(scaling · q kᵀ + causal/sliding mask)` in float32 for q (h, n, D) at absolute positions
    `q_pos` and k (h, T_k, D) starting at position `k_start`; columns are absolute key positions."""
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) * scaling
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    key_pos = torch.arange(k_start, k_start + k.shape[-2], device=q.device)
    q_pos = q_pos.to(q.device)
    visible = key_pos[None, :] <= q_pos[:, None]
    if sliding_window is not None:
        visible &= key_pos[None, :] > q_pos[:, None] - sliding_window
    rows = torch.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1)
    if k_start > 0:  # keep the column index == absolute position
        rows = torch.nn.functional.pad(rows, (k_start, 0))
    return rows
