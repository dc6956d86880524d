"""The output layer's greedy choice: the screened argmax equals the float32 layer's, row by row; `--dtype` picks it."""

from __future__ import annotations

import pytest
import torch

from alignheads.model.loader import load_model
from alignheads.model.outlayer import PlainArgmax, ScreenedArgmax, output_argmax


def _layer(vocab: int = 2048, dim: int = 96, bias: bool = False, seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    layer = torch.nn.Linear(dim, vocab, bias=bias)
    with torch.no_grad():
        layer.weight.mul_(4.0)
    return layer.requires_grad_(False)


def _close(layer: torch.nn.Linear, x: torch.Tensor, gap: float) -> torch.Tensor:
    """`x` moved, row by row, so that its best two logits under `layer` lie `gap` apart."""
    z = layer(x)
    top2 = z.topk(2).indices
    d = layer.weight[top2[:, 0]] - layer.weight[top2[:, 1]]
    now = z.gather(1, top2[:, :1]) - z.gather(1, top2[:, 1:])
    return x - ((now - gap) / (d * d).sum(1, keepdim=True)) * d


@pytest.mark.parametrize("screen", ["int8", "bf16", "fbgemm"])
@pytest.mark.parametrize("bias", [False, True])
def test_the_screened_argmax_is_the_float32_argmax(screen, bias):
    """On thousands of rows — random and built to have a close runner-up — the screen never changes the token."""
    layer = _layer(bias=bias)
    x = torch.randn(3000, 96) * 2
    close = _close(layer, x, 1e-3)  # best two logits ~1e-3 apart: only the bound keeps them exact
    head = ScreenedArgmax(layer, screen)
    for rows in (x, close):
        assert head.argmax(rows) == PlainArgmax(layer).argmax(rows)
    assert head.stats.rows == 6000 and head.stats.candidates >= 6000


@pytest.mark.parametrize("screen", ["int8", "bf16", "fbgemm"])
def test_a_screen_whose_weights_are_exact_rests_on_its_activation_bound(screen):
    """Weights on every screen's grid (int8 levels times a power of two): no compression error, so only the bound's
    activation and rounding terms keep exact the rows whose best two logits are 5e-3 apart (above float32's own
    accumulation error, below what the screens' activations move)."""
    torch.manual_seed(1)
    layer = torch.nn.Linear(96, 2048, bias=False).requires_grad_(False)
    with torch.no_grad():
        layer.weight.copy_(torch.randint(-127, 128, (2048, 96)) * 2.0 ** -5)
        layer.weight[:, 0] = 127 * 2.0 ** -5  # every row's largest weight is 127 levels: the scale is 2^-5
    close = _close(layer, torch.randn(3000, 96), 5e-3)
    head = ScreenedArgmax(layer, screen)
    assert float(head.bounds.err_max.max()) == 0.0
    assert head.argmax(close) == PlainArgmax(layer).argmax(close) and head.stats.fallbacks == 0


def test_a_near_tie_falls_back_to_the_whole_float32_layer():
    """Two rows equal to 1e-6: float32 summation order could decide, so the plain layer decides."""
    layer = _layer()
    with torch.no_grad():
        layer.weight[7] = layer.weight[3] + 1e-7
    x = layer.weight[3:4] * 10  # the best two are rows 3 and 7, a hair apart
    head = ScreenedArgmax(layer, "int8")
    assert head.argmax(x) == PlainArgmax(layer).argmax(x) and head.stats.fallbacks == 1


def test_a_gap_within_float32_accumulation_error_falls_back_to_the_whole_layer():
    """Logits near 1500 whose best two are 3e-4 apart: float32's summation order decides, so the whole layer does
    (row by row, as drafting calls it), not the candidates' own float32 products."""
    layer = _layer(vocab=512)
    close = _close(layer, torch.randn(200, 96) * 40, 3e-4)
    head = ScreenedArgmax(layer, "int8")
    assert head.argmax(close) == [PlainArgmax(layer).argmax(row[None])[0] for row in close]
    assert head.stats.fallbacks == len(close)


def test_auto_times_the_choices_and_keeps_the_fastest():
    head = output_argmax(_layer(vocab=40000, dim=64), "auto")
    assert set(head.timings) >= {"plain"} and head.timings[head.name.removeprefix("screened-")] == min(
        head.timings.values())
    assert isinstance(output_argmax(_layer(), "plain"), PlainArgmax)


def test_dtype_auto_and_int8_and_the_override():
    """`auto` keeps the float32 decoder and screens the output layer; `int8` quantises the decoder too; a named
    dtype overrides both; the name says which (printed at start-up, recorded in scores.json and head sets)."""
    auto = load_model("tiny-gemma3", dtype="auto")
    assert auto.dtype.startswith("float32+") and next(auto.model.parameters()).dtype == torch.float32
    int8 = load_model("tiny-gemma3", dtype="int8")
    assert int8.dtype.startswith("int8+") and type(int8.decoder.layers[0].mlp.down_proj).__name__ == "Int8Linear"
    plain = load_model("tiny-gemma3", dtype="float32")
    assert plain.dtype == "float32" and isinstance(plain.greedy, PlainArgmax)
    assert load_model("tiny-gemma3", dtype="bfloat16").dtype == "bfloat16"
    ids = torch.randint(10, 300, (1, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hidden = plain.decoder(input_ids=ids).last_hidden_state[0]
        assert auto.greedy.argmax(hidden) == plain.greedy.argmax(hidden)
        quantised = int8.decoder(input_ids=ids).last_hidden_state[0]
    assert (quantised - hidden).abs().max() > 0  # int8 changes the decoder (and the attention the heads read)


def test_the_cli_defaults_auto_for_translate_and_serve_and_float32_for_score():
    from alignheads.cli.commands import build_parser

    p = build_parser()
    assert p.parse_args(["translate", "a.wav", "--tgt", "de", "--heads", "h.json", "--out", "o"]).dtype == "auto"
    assert p.parse_args(["serve", "--heads", "h.json"]).dtype == "auto"
    assert p.parse_args(["score", "--data", "d.tsv", "--src", "en", "--tgt", "de", "--out", "o"]).dtype is None
    assert p.parse_args(["translate", "a.wav", "--tgt", "de", "--dtype", "float32", "--out", "o"]).dtype == "float32"
