"""Batched forwards of sequences with their own caches (`model.batching`): each row as if it had run alone."""

from __future__ import annotations

import pytest
import torch

from alignheads.model.attention import replay_rows
from alignheads.model.batching import Step, batched_forward
from alignheads.model.capture import AttentionCapture

# (cached tokens, fed tokens, hidden states kept): a new session's first chunk, a draft step, and prompt chunks
# whose caches reach past the tiny models' 16-token sliding window.
ROWS = [(0, 9, 2), (21, 1, 1), (7, 5, 3), (30, 12, 1)]


def _cache(lm, ids: list[int]):
    from transformers import DynamicCache

    cache = DynamicCache(config=lm.model.config)
    cache.activate_past_recording()
    if ids:
        with torch.inference_mode():
            lm.decoder(input_ids=torch.tensor([ids]), cache=cache, use_cache=True)
    return cache


@pytest.mark.parametrize("name", ["tiny3", "tiny4"])
def test_a_batched_forward_gives_every_row_what_it_gets_alone(name, request):
    """Guards batched prefill in the server: rows with different cache lengths (one empty) and different numbers of
    fed tokens, sliding-window layers included, get the hidden states, new cache entries and captured attention
    they get alone (the right padding of short chunks and the left padding of short caches stay invisible)."""
    lm = request.getfixturevalue(name)
    gen = torch.Generator().manual_seed(0)
    vocab = len(lm.tokenizer)
    seqs = [(torch.randint(10, vocab, (past + fed,), generator=gen).tolist(), past, fed, keep)
            for past, fed, keep in ROWS]
    layers = [0, 2, 5]

    def run(batched: bool):
        steps = []
        for ids, past, _fed, keep in seqs:
            cap = AttentionCapture(lm.model, layers, q_from=past)
            cap.reset()
            steps.append(Step(_cache(lm, ids[:past]), past, ids[past:], keep, cap))
        if batched:
            hidden = batched_forward(lm, steps)
        else:
            hidden = []
            for s in steps:
                s.capture.attach()
                with torch.inference_mode():
                    out = lm.decoder(input_ids=torch.tensor([s.tokens]), cache=s.cache, use_cache=True)
                s.capture.detach()
                hidden.append(out.last_hidden_state[0, -s.keep:])
        return steps, hidden

    (b_steps, b_hidden), (a_steps, a_hidden) = run(True), run(False)
    for (_ids, past, fed, keep), bs, bh, as_, ah in zip(seqs, b_steps, b_hidden, a_steps, a_hidden, strict=True):
        assert bh.shape == ah.shape == (keep, lm.model.config.get_text_config().hidden_size)
        torch.testing.assert_close(bh, ah, atol=1e-5, rtol=1e-5)
        for bl, al in zip(bs.cache.layers, as_.cache.layers, strict=True):
            if getattr(al, "keys", None) is not None:
                assert bl.keys.shape[-2] == al.keys.shape[-2] == past + fed
                torch.testing.assert_close(bl.keys, al.keys, atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(bl.values, al.values, atol=1e-5, rtol=1e-5)
        for layer in layers:
            rows_b = replay_rows(bs.capture, layer, positions=list(range(past, past + fed)))
            rows_a = replay_rows(as_.capture, layer, positions=list(range(past, past + fed)))
            torch.testing.assert_close(rows_b, rows_a, atol=1e-5, rtol=1e-5)
