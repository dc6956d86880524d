"""The output layer's greedy choice: the float32 argmax, exactly, without reading the whole float32 matrix.

Drafting needs only the argmax of `logits = W · h` (W: vocabulary × hidden; 262 144 × 640 for the embedded model,
more than half of a draft token's cost on a CPU). `ScreenedArgmax` computes cheap logits ẑ with a compressed
copy of W, bounds their error for this very h, and recomputes in float32 only the rows that could still be the
maximum:

    |z_j − ẑ_j| ≤ ε_j = min(‖h‖₁·e_j, ‖h‖₂·n_j) + (‖h − ĥ‖₁ + γ(‖h‖₁ [+ ‖ĥ‖₁]))·m_j + u·|ô_j| + 10⁻⁵

with e_j, n_j the largest and the L2 size of row j's compression error, m_j its largest weight, ĥ the activations
as the screen sees them, γ the float32 accumulation error per unit of ‖·‖₁ (for the float32 reference, and for a
screen that accumulates in floating point) and u the rounding of the screen outputs |ô_j|. Three screens:

- `int8`: per-row int8 weights, h split into two bf16 rows (hi + lo ≈ h), `torch.ops.aten._weight_int8pack_mm`
  (u = 2⁻⁸(1 + 2⁻⁶): bf16 outputs);
- `bf16`: bf16 weights, the same two rows;
- `fbgemm`: the same per-row int8 weights through FBGEMM's dynamic int8 linear, the fastest int8 kernel on CPUs
  without AVX-512. It quantises its input itself, with one 7-bit scale per call; the screen hands it rows that
  lie exactly on a grid it chooses (a power-of-two step, the grid's ends present in two extra zero-weight
  columns), so that quantisation is lossless and ĥ is known: h on that grid, then the residual on a grid 2⁶ finer
  (fed 2⁶ times larger). Accumulation is exact in int32 and u = 2⁻²¹. A construction-time check refuses a
  build whose kernel does not reproduce the grid exactly.

Every row j with ẑ_j + ε_j ≥ max_k(ẑ_k − ε_k) is a candidate; the float32 logits of the candidates decide. When the
best two candidates lie within float32's accumulation error of each other (2γ‖h‖₁·max m_j, at least `TIE`: the
summation order could decide there) the whole float32 layer decides instead, so the token is the plain model's.
The decoder is untouched: attention stays bit-identical.

`PlainArgmax` is the reference: the model's own float32 (or bf16) layer.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

TIE = 1e-4  # candidates closer than this (or than float32's accumulation error): the whole float32 layer decides
_U_BF16 = 2.0 ** -8
Screen = Literal["int8", "bf16", "fbgemm"]
_FB_LEVELS = 127  # FBGEMM's 7-bit activations (reduce_range): u8 x s8 pair sums cannot saturate int16
_FB_SHIFT = 6  # the residual row's grid is 2^6 finer
_FB_ROWS = 2  # h on the grid, then its residual


def _softcap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    return logits if cap is None else torch.tanh(logits / cap) * cap


def _best(logits: torch.Tensor, banned: torch.Tensor | None) -> list[int]:
    """The argmax of every row of `logits` [rows, vocabulary] that is not a `banned` id."""
    if banned is not None:
        logits[..., banned] = -torch.inf
    return logits.argmax(-1).tolist()


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
        return _best(_softcap(self.layer(hidden), self.softcap), banned)


@dataclass
class _Bounds:
    """Per vocabulary row: largest compression error, its L2 size, largest weight (original or compressed)."""

    err_max: torch.Tensor
    err_l2: torch.Tensor
    weight_max: torch.Tensor
    top: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0))  # the three maxima over all rows


class ScreenedArgmax:
    """The exact float32 argmax through a cheap screen (see the module docstring)."""

    timings: dict[str, float] = {}

    def __init__(self, layer: torch.nn.Linear, screen: Screen = "int8", softcap: float | None = None):
        weight = layer.weight.detach()
        if weight.dtype != torch.float32:
            raise ValueError(f"the screened argmax reproduces a float32 layer, got {weight.dtype}")
        if screen not in ("int8", "bf16", "fbgemm"):
            raise ValueError(f"screen must be 'int8', 'bf16' or 'fbgemm', got {screen!r}")
        self.weight, self.screen, self.softcap = weight, screen, softcap
        self.bias = None if layer.bias is None else layer.bias.detach()
        self.name = f"screened-{screen}"
        self.gamma = weight.shape[1] * 2.0 ** -24 * 1.01
        self.rounding = 2.0 ** -21 if screen == "fbgemm" else _U_BF16 * (1 + 4 * _U_BF16)
        with torch.no_grad():
            if screen == "bf16":
                self.wb = weight.to(torch.bfloat16)
                approx = self.wb.float()
            else:
                scale = weight.abs().amax(1).clamp_min(1e-30) / 127
                if screen == "int8":  # _weight_int8pack_mm takes bf16 scales
                    scale = scale.to(torch.bfloat16).float()
                q = torch.round(weight / scale[:, None]).clamp_(-127, 127).to(torch.int8)
                if screen == "int8":
                    self.q, self.scale = q, scale.to(torch.bfloat16)
                else:
                    self.packed = _fbgemm_pack(q, scale)
                approx = q.float().mul_(scale[:, None])
            weight_max = torch.maximum(approx.abs().amax(1), weight.abs().amax(1))
            err = approx.sub_(weight)  # in place: one matrix-sized temporary
            b = _Bounds(err.abs().amax(1), err.norm(dim=1), weight_max)
            del err, approx
            if screen == "fbgemm":
                self._check_fbgemm(q, scale)
        b.top = (float(b.err_max.max()), float(b.err_l2.max()), float(b.weight_max.max()))
        self.bounds = b
        self.stats = HeadStats()

    def _fbgemm_rows(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """FBGEMM's input for `hidden` [B, K] — [h on the grid; residual × 2⁶] per row, lossless under its own
        quantisation — and ‖h − ĥ‖₁ per row."""
        lo, hi = min(float(hidden.min()), 0.0), max(float(hidden.max()), 0.0)
        step, zero = _fbgemm_grid(lo, hi)
        rest, rows = hidden.double(), []
        for k in range(_FB_ROWS):
            g = step * 2.0 ** (-_FB_SHIFT * k)
            n = torch.round(rest / g).clamp_(-zero, _FB_LEVELS - zero)
            rest = rest - n * g  # exact in float64: few significant bits
            rows.append(n * step)
        x = torch.zeros(_FB_ROWS * len(hidden), hidden.shape[1] + 2)
        x[:, :-2] = torch.cat(rows).float()
        x[0, -2:] = torch.tensor([-zero * step, (_FB_LEVELS - zero) * step])  # the grid's ends fix FBGEMM's scale
        return x, rest.abs().sum(1).float()

    def _fbgemm_out(self, x: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """ẑ and the magnitudes their rounding scales with, from FBGEMM's outputs for `_fbgemm_rows`."""
        out = torch.ops.quantized.linear_dynamic(x, self.packed, True).view(_FB_ROWS, rows, -1)
        approx, mag = out[0].clone(), out[0].abs()
        for k in range(1, _FB_ROWS):
            part = out[k] * 2.0 ** (-_FB_SHIFT * k)  # a power of two: exact
            approx += part
            mag += part.abs()
        return approx, mag

    def _check_fbgemm(self, q: torch.Tensor, scale: torch.Tensor) -> None:
        """Refuse a build whose FBGEMM does not reproduce the screen's grid exactly (the bound would not hold)."""
        probe = torch.randn(2, q.shape[1], generator=torch.Generator().manual_seed(0)) * 50
        x, _ = self._fbgemm_rows(probe)
        n = min(len(q), 4096)
        approx, mag = self._fbgemm_out(x, 2)
        seen = sum(x[k * 2:(k + 1) * 2, :-2].double() * 2.0 ** (-_FB_SHIFT * k) for k in range(_FB_ROWS))
        exact = seen @ (q[:n].double() * scale[:n, None].double()).T
        if ((approx[:, :n].double() - exact).abs() > self.rounding * mag[:, :n].double() + 1e-30).any():
            raise RuntimeError("FBGEMM's dynamic int8 linear does not reproduce the screen's grid exactly here")

    def _screen(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For `hidden` [B, K]: the screen logits ẑ [B, V], the magnitudes their rounding scales with [B, V], and
        per row the activation term of the bound, ‖h − ĥ‖₁ plus the float32 accumulation allowance [B]."""
        l1 = hidden.abs().sum(1)
        if self.screen == "fbgemm":
            x, residual = self._fbgemm_rows(hidden)
            approx, mag = self._fbgemm_out(x, len(hidden))
            return approx, mag, residual + self.gamma * l1
        hi = hidden.to(torch.bfloat16)
        x = torch.cat([hi, (hidden - hi.float()).to(torch.bfloat16)])
        if self.screen == "int8":
            out = torch.ops.aten._weight_int8pack_mm(x, self.q, self.scale).float()
        else:
            out = F.linear(x, self.wb).float()
        rows = len(hidden)
        seen = x[:rows].float() + x[rows:].float()
        act = (hidden - seen).abs().sum(1) + self.gamma * (l1 + seen.abs().sum(1))
        return out[:rows] + out[rows:], out[:rows].abs() + out[rows:].abs(), act

    def argmax(self, hidden: torch.Tensor, banned: torch.Tensor | None = None) -> list[int]:
        """The float32 layer's argmax token of every row of `hidden` [rows, hidden size], never a `banned` id."""
        hidden = hidden.float()
        rows = hidden.shape[0]
        if not torch.isfinite(hidden).all():  # no bound holds: the whole layer decides
            self.stats.rows += rows
            self.stats.fallbacks += rows
            return _best(_softcap(F.linear(hidden, self.weight, self.bias), self.softcap), banned)
        screened, mags, acts = self._screen(hidden)
        if self.bias is not None:  # added exactly: it moves ẑ and z alike
            screened = screened + self.bias
        b, tokens = self.bounds, []
        for r in range(rows):
            h, approx, mag, act = hidden[r], screened[r], mags[r], acts[r]
            if banned is not None:
                approx[banned] = -torch.inf
            l1, l2 = h.abs().sum(), h.norm()
            # a cheap superset first (one bound for all rows), then the per-row bound on it
            worst = torch.minimum(l1 * b.top[0], l2 * b.top[1]) + act * b.top[2] + self.rounding * mag.max()
            near = torch.nonzero(approx >= approx.max() - 2 * worst - 1e-5).flatten()
            eps = (torch.minimum(l1 * b.err_max[near], l2 * b.err_l2[near]) + act * b.weight_max[near]
                   + self.rounding * mag[near] + 1e-5)
            cand = near[approx[near] + eps >= (approx[near] - eps).max()]
            exact = _softcap(F.linear(h[None], self.weight.index_select(0, cand),
                                      None if self.bias is None else self.bias.index_select(0, cand))[0],
                             self.softcap)
            self.stats.candidates += len(cand)
            if len(cand) > 1 and float(exact.topk(2).values.diff().abs()) < max(
                    TIE, 2 * self.gamma * float(l1) * float(b.weight_max[cand].max())):  # a near tie: the whole layer
                self.stats.fallbacks += 1
                tokens += _best(_softcap(F.linear(h[None], self.weight, self.bias), self.softcap), banned)
            else:
                tokens.append(int(cand[exact.argmax()]))
        self.stats.rows += rows
        return tokens


def _fbgemm_grid(lo: float, hi: float) -> tuple[float, int]:
    """The smallest power-of-two step, and a zero point, whose 7-bit grid holds [lo, hi] and leaves room on both
    sides of zero for the residual row (2⁵ steps: the residual is at most half a step, 2⁶ times finer)."""
    room = 2 ** (_FB_SHIFT - 1)
    step = 2.0 ** math.floor(math.log2(max(hi - lo, 1e-20) / _FB_LEVELS))  # a normal float32 even for h = 0
    while True:
        zero = max(math.ceil(-lo / step), room)
        if zero <= _FB_LEVELS - room and (_FB_LEVELS - zero) * step >= hi:
            return step, zero
        step *= 2


def _fbgemm_pack(q: torch.Tensor, scale: torch.Tensor):
    """FBGEMM's packed weight for int8 rows `q` (plus two zero columns for the grid's ends) with float scales."""
    padded = torch.cat([q, torch.zeros(len(q), 2, dtype=torch.int8)], 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PyTorch marks quantised tensors deprecated; still FBGEMM's entry point
        qw = torch._make_per_channel_quantized_tensor(padded, scale.double(), torch.zeros(len(q), dtype=torch.long),
                                                       0)
        return torch.ops.quantized.linear_prepack(qw, None)


def output_argmax(layer: torch.nn.Linear, choice: Literal["plain", "auto"] | Screen = "auto",
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
    for name in ("plain", "int8", "bf16", "fbgemm"):
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
