"""The output layer's greedy choice: the float32 argmax, exactly, without reading the whole float32 matrix.

Drafting needs only the argmax of `logits = W · h` (W: vocabulary × hidden; 262 144 × 640 for the embedded model,
more than half of a draft token's cost on a CPU). `ScreenedArgmax` computes cheap logits ẑ with a compressed
copy of W (per-row int8 with bf16 activations through `torch.ops.aten._weight_int8pack_mm`, or bf16), bounds
their error for this very h, and recomputes in float32 only the rows that could still be the maximum:

    |z_j − ẑ_j| ≤ ε_j = min(‖h‖₁·e_j, ‖h‖₂·n_j) + (‖h − ĥ‖₁ + γ(‖h‖₁ + ‖ĥ‖₁))·m_j + 2⁻⁸(1 + 2⁻⁶)·|ô_j| + 10⁻⁵

with e_j, n_j the largest and the L2 size of row j's compression error, m_j its largest weight, ĥ the activations
as the screen sees them (split into two bf16 rows, hi + lo, so that ĥ ≈ h), γ the float32 accumulation error per
unit of ‖·‖₁ (both for the screen and for the float32 reference) and |ô_j| the bf16-rounded screen outputs. Every
row j with ẑ_j + ε_j ≥ max_k(ẑ_k − ε_k) is a candidate; the float32 logits of the candidates decide. When the best
two candidates lie within `TIE` of each other (float32 summation order could matter there) the whole float32 layer
decides instead, so the token is the plain model's. The decoder is untouched: attention stays bit-identical.

`PlainArgmax` is the reference: the model's own float32 (or bf16) layer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

TIE = 1e-4  # candidates closer than this: the whole float32 layer decides
_U_BF16 = 2.0 ** -8


def _softcap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    return logits if cap is None else torch.tanh(logits / cap) * cap


@dataclass
class HeadStats:
    """What the screened argmax did: rows screened, float32 candidates recomputed, whole-layer fallbacks."""

    rows: int = 0
    candidates: int = 0
    fallbacks: int = 0


class PlainArgmax:
    """Greedy tokens from the model's own output layer (the reference)."""

    name = "plain"
    timings: dict[str, float] = {}

    def __init__(self, layer: torch.nn.Module, softcap: float | None = None):
        self.layer, self.softcap = layer, softcap
        self.stats = HeadStats()

    def argmax(self, hidden: torch.Tensor, banned: torch.Tensor | None = None) -> list[int]:
        """The argmax token of every row of `hidden` [rows, hidden size], never one of the `banned` ids."""
        self.stats.rows += hidden.shape[0]
        logits = _softcap(self.layer(hidden), self.softcap)
        if banned is not None:
            logits[:, banned] = -torch.inf
        return logits.argmax(-1).tolist()


@dataclass
class _Bounds:
    """Per vocabulary row: largest compression error, its L2 size, largest weight (original or compressed)."""

    err_max: torch.Tensor
    err_l2: torch.Tensor
    weight_max: torch.Tensor
    top: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))  # the three maxima over all rows


class ScreenedArgmax:
    """The exact float32 argmax through a cheap screen (see the module docstring); `screen` "int8" or "bf16"."""

    timings: dict[str, float] = {}

    def __init__(self, layer: torch.nn.Linear, screen: Literal["int8", "bf16"] = "int8",
                 softcap: float | None = None):
        weight = layer.weight.detach()
        if weight.dtype != torch.float32:
            raise ValueError(f"the screened argmax reproduces a float32 layer, got {weight.dtype}")
        self.weight, self.screen, self.softcap = weight, screen, softcap
        self.bias = None if layer.bias is None else layer.bias.detach()
        self.name = f"screened-{screen}"
        self.gamma = weight.shape[1] * 2.0 ** -24 * 1.01
        with torch.no_grad():
            if screen == "int8":
                self.scale = (weight.abs().amax(1).clamp_min(1e-30) / 127).to(torch.bfloat16)
                self.q = torch.round(weight / self.scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
                approx = self.q.float().mul_(self.scale.float()[:, None])
            elif screen == "bf16":
                self.wb = weight.to(torch.bfloat16)
                approx = self.wb.float()
            else:
                raise ValueError(f"screen must be 'int8' or 'bf16', got {screen!r}")
            weight_max = torch.maximum(approx.abs().amax(1), weight.abs().amax(1))
            err = approx.sub_(weight)  # in place: one matrix-sized temporary
            b = _Bounds(err.abs().amax(1), err.norm(dim=1), weight_max)
        b.top = (float(b.err_max.max()), float(b.err_l2.max()), float(b.weight_max.max()))
        self.bounds = b
        self.stats = HeadStats()

    def _screen(self, hidden: torch.Tensor) -> torch.Tensor:
        """bf16 screen outputs for [hi rows; lo rows] of `hidden` [B, K]: [2B, V]."""
        hi = hidden.to(torch.bfloat16)
        x = torch.cat([hi, (hidden - hi.float()).to(torch.bfloat16)])
        if self.screen == "int8":
            return torch.ops.aten._weight_int8pack_mm(x, self.q, self.scale)
        return F.linear(x, self.wb)

    def argmax(self, hidden: torch.Tensor, banned: torch.Tensor | None = None) -> list[int]:
        """The float32 layer's argmax token of every row of `hidden` [rows, hidden size], never a `banned` id."""
        hidden = hidden.float()
        rows = hidden.shape[0]
        out = self._screen(hidden)
        hi, lo = out[:rows].float(), out[rows:].float()
        if self.bias is not None:  # added exactly: it moves ẑ and z alike
            hi = hi + self.bias
        seen = hidden.to(torch.bfloat16).float()
        seen = seen + (hidden - seen).to(torch.bfloat16).float()
        b, tokens = self.bounds, []
        for r in range(rows):
            h, approx = hidden[r], hi[r] + lo[r]
            if banned is not None:
                approx[banned] = -torch.inf
            l1, l2 = h.abs().sum(), h.norm()
            act = (h - seen[r]).abs().sum() + self.gamma * (l1 + seen[r].abs().sum())
            rounding = _U_BF16 * (1 + 4 * _U_BF16)
            # a cheap superset first (one bound for all rows), then the per-row bound on it
            worst = torch.minimum(l1 * b.top[0], l2 * b.top[1]) + act * b.top[2] + rounding * (hi[r].abs().max()
                                                                                                 + lo[r].abs().max())
            near = torch.nonzero(approx >= approx.max() - 2 * worst - 1e-5).flatten()
            eps = (torch.minimum(l1 * b.err_max[near], l2 * b.err_l2[near]) + act * b.weight_max[near]
                   + rounding * (hi[r, near].abs() + lo[r, near].abs()) + 1e-5)
            cand = near[approx[near] + eps >= (approx[near] - eps).max()]
            exact = _softcap(F.linear(h[None], self.weight.index_select(0, cand),
                                      None if self.bias is None else self.bias.index_select(0, cand))[0],
                             self.softcap)
            self.stats.candidates += len(cand)
            if len(cand) > 1 and float(exact.topk(2).values.diff().abs()) < TIE:  # a near tie: the whole layer
                self.stats.fallbacks += 1
                logits = _softcap(F.linear(h[None], self.weight, self.bias), self.softcap)[0]
                if banned is not None:
                    logits[banned] = -torch.inf
                tokens.append(int(logits.argmax()))
            else:
                tokens.append(int(cand[exact.argmax()]))
        self.stats.rows += rows
        return tokens


def output_argmax(layer: torch.nn.Linear, choice: Literal["plain", "int8", "bf16", "auto"] = "auto",
                  softcap: float | None = None) -> PlainArgmax | ScreenedArgmax:
    """The greedy-token function for a model's output `layer`: `auto` times each way this CPU can run (on a slice
    of this very matrix, a few calls each) and keeps the fastest; `timings` says what it measured."""
    weight = layer.weight
    if choice == "plain" or weight.dtype != torch.float32 or weight.device.type != "cpu":
        return PlainArgmax(layer, softcap)
    if choice != "auto":
        return ScreenedArgmax(layer, choice, softcap)
    rows = min(len(weight), 32768)
    part = torch.nn.Linear(weight.shape[1], rows, bias=False)
    part.weight = torch.nn.Parameter(weight.detach()[:rows], requires_grad=False)
    probe = torch.randn(1, weight.shape[1], generator=torch.Generator().manual_seed(0))
    timings: dict[str, float] = {}
    for name in ("plain", "int8", "bf16"):
        try:
            head = PlainArgmax(part, softcap) if name == "plain" else ScreenedArgmax(part, name, softcap)
            with torch.no_grad():
                head.argmax(probe)
                t0 = time.perf_counter()
                for _ in range(5):
                    head.argmax(probe)
            timings[name] = (time.perf_counter() - t0) / 5 * len(weight) / rows * 1000
        except (RuntimeError, NotImplementedError):  # a screen this torch build or CPU cannot run
            continue
    best = min(timings, key=timings.get)
    head = PlainArgmax(layer, softcap) if best == "plain" else ScreenedArgmax(layer, best, softcap)
    head.timings = {name: round(ms, 2) for name, ms in timings.items()}  # ms per row, estimated from the slice
    return head
