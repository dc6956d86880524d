"""Capture keeps outputs bit-identical; replayed rows equal eager `output_attentions`."""

from __future__ import annotations

import pytest
import torch

from alignheads.model.attention import pool_source_words, replay_rows, word_query_positions
from alignheads.model.capture import AttentionCapture

MODELS = ["tiny3", "tiny4", "embedded"]


def _ids(lm, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(10, min(len(lm.tokenizer), 20000), (1, n), generator=g)


@pytest.mark.parametrize("name", MODELS)
def test_forward_and_cached_generate_are_bit_identical(name, request):
    lm = request.getfixturevalue(name)
    x = _ids(lm, 40)
    with torch.no_grad():
        plain_logits = lm.model(x).logits
        plain_gen = lm.model.generate(x, max_new_tokens=8, do_sample=False)
        with AttentionCapture(lm.model) as cap:
            cap_logits = lm.model(x).logits
        with AttentionCapture(lm.model) as cap:
            cap_gen = lm.model.generate(x, max_new_tokens=8, do_sample=False)
    assert torch.equal(plain_logits, cap_logits)
    assert torch.equal(plain_gen, cap_gen)
    # prompt keys captured once, then one key per decoded token; the last token is never fed back
    for layer in cap.layers:
        keys, start = cap.keys(layer)
        assert start == 0 and keys.shape[2] == 40 + 8 - 1
    assert lm.model.config._attn_implementation == "sdpa"  # restored


def _eager_rows(lm, ids, layers=None, generate=0):
    """Capture while the eager kernel runs, and the eager attentions of the same sequence."""
    model = lm.model
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad(), AttentionCapture(model, layers) as cap:
            if generate:
                ids = model.generate(ids, max_new_tokens=generate, do_sample=False)[:, :-1]
            else:
                model(ids)
        with torch.no_grad():
            attn = model(ids, output_attentions=True).attentions
    finally:
        model.set_attn_implementation("sdpa")
    return cap, attn


@pytest.mark.parametrize("name,length", [("tiny3", 12), ("tiny3", 50), ("tiny4", 12), ("tiny4", 50),
                                         ("embedded", 24), ("embedded", 600)])
def test_replay_matches_eager_output_attentions(name, length, request):
    """Full and sliding layers, inputs shorter and longer than the window (16 tiny, 512 embedded)."""
    lm = request.getfixturevalue(name)
    cap, attn = _eager_rows(lm, _ids(lm, length))
    for layer in range(lm.facts.num_layers):
        rows = replay_rows(cap, layer)
        assert rows.shape == attn[layer][0].shape
        torch.testing.assert_close(rows, attn[layer][0].float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["tiny3", "tiny4"])
def test_replay_during_cached_generation_with_kv_shared_layers(name, request):
    """Rows for prompt and draft positions after generate with a KV cache (past the sliding window)."""
    lm = request.getfixturevalue(name)
    cap, attn = _eager_rows(lm, _ids(lm, 30), generate=8)
    for layer in range(lm.facts.num_layers):
        _, pos = cap.queries(layer)
        # Gemma-4 computes KV-shared layers for the last prompt token only during prefill.
        assert pos[-1] == 36 and (pos[0] == 0 or layer in lm.facts.kv_shared)
        heads = [3, 1]
        rows = replay_rows(cap, layer, heads=heads, positions=pos[-8:])
        torch.testing.assert_close(rows, attn[layer][0, heads][:, pos[-8:]].float(), atol=1e-5, rtol=0)


def test_sdpa_capture_agrees_with_eager_reference(embedded):
    """Rows from an SDPA run match eager ones up to the kernels' float differences."""
    ids = _ids(embedded, 64, seed=3)
    with torch.no_grad(), AttentionCapture(embedded.model, [0, 5, 11]) as cap:
        embedded.model(ids)
    _, attn = _eager_rows(embedded, ids, [0])
    for layer in [0, 5, 11]:
        torch.testing.assert_close(replay_rows(cap, layer), attn[layer][0].float(), atol=1e-4, rtol=0)


def test_grouped_query_heads_read_their_kv_head(tiny4):
    ids = _ids(tiny4, 20)
    with torch.no_grad(), AttentionCapture(tiny4.model, [2]) as cap:
        tiny4.model(ids)
    q, _ = cap.queries(2)
    k, _ = cap.keys(2)
    assert q.shape[1] == 4 and k.shape[1] == 2 and q.shape[-1] == 32  # full layer, head_dim 32
    rec = cap.records[2]
    manual = torch.softmax((q[0, 3, -1] @ k[0, 1].T) * rec.scaling, dim=-1)  # head 3 -> kv head 1
    torch.testing.assert_close(replay_rows(cap, 2, heads=[3], positions=[19])[0, 0], manual)


def test_only_requested_layers_kept_and_nothing_accumulates(tiny4):
    ids = _ids(tiny4, 30)
    cap = AttentionCapture(tiny4.model, layers=[1, 4], q_from=25)
    sizes = []
    for _ in range(3):
        with torch.no_grad(), cap:
            tiny4.model(ids)
        sizes.append(cap.nbytes())
    assert set(cap.records) == {1, 4}
    assert sizes[0] == sizes[1] == sizes[2] > 0
    assert cap.queries(1)[1].tolist() == list(range(25, 30))  # q_from drops the prompt's queries
    with pytest.raises(KeyError, match="not captured"):
        cap.keys(0)
    cap.reset()
    assert cap.nbytes() == 0
    with pytest.raises(ValueError, match="out of range"):
        AttentionCapture(tiny4.model, layers=[6])


def test_word_pooling_sums_tokens_and_picks_query_positions():
    rows = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    pooled = pool_source_words(rows, [[0, 1], [2], [3]])
    torch.testing.assert_close(pooled, torch.tensor([[0.3, 0.3, 0.4]]))
    assert word_query_positions([[5, 6], [7]]) == [5, 7]
    assert word_query_positions([[5, 6], [7]], emitting=True) == [4, 6]


def test_records_do_not_pin_parent_tensors_and_errors_are_clear(tiny3):
    ids = _ids(tiny3, 30)
    with torch.no_grad(), AttentionCapture(tiny3.model, [0], q_from=28) as cap:
        tiny3.model.generate(ids, max_new_tokens=4, do_sample=False)
    rec = cap.records[0]
    for t in (*rec.queries, *rec.keys):  # no view into a whole query block or KV cache
        assert t.untyped_storage().nbytes() == t.numel() * t.element_size()
    with torch.no_grad(), AttentionCapture(tiny3.model, [0], q_from=100) as cap:
        tiny3.model(ids)
    with pytest.raises(ValueError, match="no queries recorded"):
        cap.queries(0)


@pytest.mark.parametrize("name", ["tiny3", "tiny4"])
def test_streaming_rows_equal_replay_and_store_nothing(name, request):
    """on_rows hands over each layer's rows inside the forward; they equal replayed rows; no q/k is kept."""
    lm = request.getfixturevalue(name)
    ids = _ids(lm, 40)
    with torch.no_grad(), AttentionCapture(lm.model, q_from=30) as cap:
        lm.model(ids)
    streamed = {}
    with torch.no_grad(), AttentionCapture(lm.model, q_from=30,
                                           on_rows=lambda layer, rows, pos: streamed.setdefault(layer, (rows, pos))
                                           ) as stream:
        lm.model(ids)
    assert stream.nbytes() == 0 and sorted(streamed) == list(range(lm.facts.num_layers))
    for layer, (rows, pos) in streamed.items():
        assert pos.tolist() == list(range(30, 40))
        torch.testing.assert_close(rows[0], replay_rows(cap, layer, positions=pos), atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["tiny3", "tiny4"])
def test_capture_under_eager_runs_the_eager_kernel(name, request):
    """Under `eager` the wrapper delegates to the model's own eager attention (never to SDPA): the weights that
    only eager returns are there, and logits and weights are bit-identical to a run without capture."""
    lm = request.getfixturevalue(name)
    ids = _ids(lm, 24)
    lm.model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            plain = lm.model(ids, output_attentions=True)
            with AttentionCapture(lm.model):
                captured = lm.model(ids, output_attentions=True)
    finally:
        lm.model.set_attn_implementation("sdpa")
    assert all(a is not None for a in captured.attentions)
    assert torch.equal(plain.logits, captured.logits)
    assert all(torch.equal(a, b) for a, b in zip(plain.attentions, captured.attentions, strict=True))
