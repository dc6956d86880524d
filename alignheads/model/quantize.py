"""Per-channel int8 weight-only linear layers for the decoder (the `--dtype int8` arm).

Every nn.Linear of the decoder layers keeps its weight as int8 rows with one bf16 scale per output channel
(symmetric, round to nearest) and multiplies bf16 activations with `torch.ops.aten._weight_int8pack_mm`, PyTorch's
CPU kernel for exactly this layout. Unlike per-tensor dynamic quantisation (`quantize_dynamic`, whose greedy output
shared 0 of 32 tokens with float32 on the embedded model), the error is bounded per row; it still changes the
attention the heads were calibrated on, so this arm's decisions are checked against float32 (bench_decode.py).
"""

from __future__ import annotations

import torch
from torch import nn


class Int8Linear(nn.Module):
    """A linear layer with per-output-channel int8 weights and bf16 activations; float32 in, float32 out."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        with torch.no_grad():
            w = linear.weight.detach().float()
            scale = (w.abs().amax(1).clamp_min(1e-30) / 127).to(torch.bfloat16)
            self.register_buffer("q", torch.round(w / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8))
            self.register_buffer("scale", scale)
            self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float())
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)
        y = torch.ops.aten._weight_int8pack_mm(flat, self.q, self.scale).float()
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


def quantize_decoder(model) -> int:
    """Replace every nn.Linear inside the decoder layers of `model` by an `Int8Linear`; returns how many."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model.model
    targets = [(parent, name, child) for parent in decoder.modules() for name, child in parent.named_children()
               if isinstance(child, nn.Linear)]
    for parent, name, child in targets:
        setattr(parent, name, Int8Linear(child))
    return len(targets)
