"""Tiny random Qwen3-ASR and forced-aligner models (the qwen-asr package's own config classes), for tests.

Built with an offline byte-level tokenizer; they exercise every compatibility shim of `qwen_compat` offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..base.fileio import write_json
from .audio import SAMPLE_RATE

_QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|audio_start|>", "<|audio_end|>", "<|audio_pad|>"]
_QWEN_PLAIN = ["<asr_text>", "<timestamp>"]  # plain added tokens: `<asr_text>` must survive skip_special_tokens

# The prompt layout of the Qwen3-ASR checkpoints' chat template:
# <|im_start|>system\n{context}<|im_end|>\n<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|><|im_end|>\n
# <|im_start|>assistant\n
QWEN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'audio' %}<|audio_start|><|audio_pad|><|audio_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _qwen_byte_alphabet() -> list[str]:
    """GPT-2's byte -> printable-unicode table, in byte order: the 256 base tokens of a byte-level BPE."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def tiny_qwen_processor():
    """The package's Qwen3ASRProcessor over a byte-level Qwen2 tokenizer (no merges) and 128-bin Whisper features."""
    from ..speech.qwen_compat import apply_compat

    apply_compat()
    from qwen_asr.core.transformers_backend import Qwen3ASRProcessor
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer, WhisperFeatureExtractor

    vocab = {tok: i for i, tok in enumerate(_qwen_byte_alphabet())}
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={
            "audio_token": "<|audio_pad|>",
            "audio_bos_token": "<|audio_start|>",
            "audio_eos_token": "<|audio_end|>",
        },
    )
    tokenizer.add_tokens([AddedToken(t, special=True) for t in _QWEN_SPECIAL], special_tokens=True)
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in _QWEN_PLAIN])
    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=SAMPLE_RATE)
    return Qwen3ASRProcessor(feature_extractor=features, tokenizer=tokenizer, chat_template=QWEN_CHAT_TEMPLATE)


def tiny_qwen_config(processor, aligner: bool = False, tie_word_embeddings: bool = False, classify_num: int = 32):
    """A Qwen3-ASR (or forced-aligner) config of the real architecture with tiny widths.

    The aligner classifies each `<timestamp>` into one of `classify_num` 80 ms steps (the real one
    has 5000), so the tiny one never places a word later than (classify_num - 1) * 0.08 s.
    """
    from ..speech.qwen_compat import apply_compat

    apply_compat()
    from qwen_asr.core.transformers_backend import Qwen3ASRConfig

    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in _QWEN_SPECIAL + _QWEN_PLAIN}
    thinker = {
        "audio_config": {
            "num_mel_bins": 128,
            "encoder_layers": 2,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "d_model": 32,
            "output_dim": 48,
            "downsample_hidden_size": 8,
            "max_source_positions": 1500,
            "n_window": 50,
            "n_window_infer": 800,
        },
        "text_config": {
            "vocab_size": len(tok),
            "hidden_size": 48,
            "intermediate_size": 96,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 12,
            "rope_theta": 1000000.0,
            "rope_scaling": {"rope_type": "default", "mrope_section": [2, 2, 2], "interleaved": True},
            "tie_word_embeddings": tie_word_embeddings,
        },
        "audio_token_id": ids["<|audio_pad|>"],
        "audio_start_token_id": ids["<|audio_start|>"],
    }
    languages = ["Chinese", "English", "German", "Italian"]
    if aligner:
        thinker.update(model_type="qwen3_forced_aligner", classify_num=classify_num)
        return Qwen3ASRConfig(
            thinker_config=thinker,
            support_languages=languages,
            timestamp_token_id=ids["<timestamp>"],
            timestamp_segment_time=80.0,
        )
    return Qwen3ASRConfig(thinker_config=thinker, support_languages=languages)


def save_tiny_qwen_models(directory: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Write a tiny random Qwen3-ASR and a tiny forced aligner (with processor files) under `directory`.

    Returns (asr_dir, aligner_dir), loadable with `QwenBackend(asr_model=..., aligner_model=...)`.
    """
    from ..speech.qwen_compat import apply_compat

    apply_compat()
    from qwen_asr.core.transformers_backend import Qwen3ASRForConditionalGeneration

    directory = Path(directory)
    processor = tiny_qwen_processor()
    out = []
    for i, name in enumerate(("asr", "aligner")):
        torch.manual_seed(seed + i)
        model = Qwen3ASRForConditionalGeneration(tiny_qwen_config(processor, aligner=name == "aligner")).eval()
        model.save_pretrained(directory / name)
        processor.save_pretrained(directory / name)
        out.append(directory / name)
    # config classes serialise their class-level model_type, so the aligner's thinker would reload as a
    # plain ASR thinker (lm_head of vocab size); the released aligner's config.json names it explicitly.
    config_file = out[1] / "config.json"
    config = json.loads(config_file.read_text())
    config["thinker_config"]["model_type"] = "qwen3_forced_aligner"
    write_json(config_file, config)
    return out[0], out[1]


# --- the backend -------------------------------------------------------------------------------------
