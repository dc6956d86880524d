"""Tiny random Gemma-3 / Gemma-4 models and an offline tokenizer, for tests and CI.

They are built from transformers' real config and model classes, so every code path the
production model takes (GQA, sliding and full layers with different head dims, Gemma-4's
per-layer embeddings and KV-shared layers) runs here in milliseconds. Their outputs are
noise; their shapes and attention mechanics are real.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch

from .audio import SAMPLE_RATE
from .fileio import write_json

# A few sentences in the languages the tests use, so the BPE learns multi-token words,
# glued punctuation, digits and CJK byte sequences. Written for this project.
_TRAINING_TEXT = """\
In this talk we present a simple method for simultaneous speech translation.
Our model improves BLEU by 2.3 points on the test set, and latency drops to 1.8 seconds.
The attention heads align each target word with a source word.
In diesem Vortrag stellen wir eine einfache Methode für simultane Sprachübersetzung vor.
Unser Modell verbessert den BLEU-Wert um 2,3 Punkte auf dem Testdatensatz.
In questo intervento presentiamo un metodo semplice per la traduzione simultanea del parlato.
Il nostro modello migliora il BLEU di 2,3 punti sull'insieme di test.
在这次报告中，我们提出了一种简单的同声传译方法。
我们的模型在测试集上将BLEU提高了2.3分。
"""

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]

# Gemma-style chat template: the system text is folded into the first user turn.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% set ns = namespace(system='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.system = m['content'] + '\n\n' %}"
    "{% else %}"
    "{% set role = 'model' if m['role'] == 'assistant' else m['role'] %}"
    "<start_of_turn>{{ role }}\n{% if m['role'] == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
    "{{ m['content'] }}<end_of_turn>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@lru_cache(maxsize=1)
def tiny_tokenizer():
    """A byte-level BPE tokenizer (vocab 512) trained in memory, with offsets and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_TRAINING_TEXT.splitlines(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
        chat_template=TINY_CHAT_TEMPLATE,
    )


def _common(tok, sliding_window: int) -> dict:
    """Config fields both tiny families share: 6 layers of width 64, 4 query heads over 2 KV heads."""
    return {
        "vocab_size": len(tok), "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 6,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "sliding_window": sliding_window,
        "max_position_embeddings": 2048, "pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
    }


def tiny_gemma3(seed: int = 0, sliding_window: int = 16, tokenizer=None):
    """Tiny random Gemma-3: 6 layers (5 sliding : 1 full), 4 query heads sharing 2 KV heads (vocabulary of
    `tokenizer`, default `tiny_tokenizer()`)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    tok = tokenizer or tiny_tokenizer()
    config = Gemma3TextConfig(query_pre_attn_scalar=16, **_common(tok, sliding_window))
    torch.manual_seed(seed)
    return Gemma3ForCausalLM(config).eval(), tok


def tiny_gemma4(seed: int = 0, sliding_window: int = 16):
    """Tiny random Gemma-4: per-layer embeddings, sliding (head_dim 16) and full (head_dim 32) layers,
    and a KV-shared tail (layers 4–5 reuse the caches of layers 3 and 2), like E4B's last 18 layers."""
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    tok = tiny_tokenizer()
    layer_types = ["sliding_attention", "sliding_attention", "full_attention"] * 2
    config = Gemma4TextConfig(
        global_head_dim=32,
        layer_types=layer_types,
        num_kv_shared_layers=2,
        hidden_size_per_layer_input=16,
        vocab_size_per_layer_input=len(tok),
        **_common(tok, sliding_window),
    )
    torch.manual_seed(seed)
    return Gemma4ForCausalLM(config).eval(), tok


TINY_MODELS = {"tiny-gemma3": tiny_gemma3, "tiny-gemma4": tiny_gemma4}


# --- tiny random Qwen3-ASR and forced-aligner models (the qwen-asr package's own config classes) -------

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
    from .qwen_compat import apply_compat

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
    from .qwen_compat import apply_compat

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
    from .qwen_compat import apply_compat

    apply_compat()
    import torch
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
