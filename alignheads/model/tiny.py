"""Tiny random Gemma-3 / Gemma-4 models and an offline tokenizer, for tests and CI.

They are built from transformers' real config and model classes, so every code path the
production model takes (GQA, sliding and full layers with different head dims, Gemma-4's
per-layer embeddings and KV-shared layers) runs here in milliseconds. Their outputs are
noise; their shapes and attention mechanics are real.
"""

from __future__ import annotations

from functools import lru_cache

import torch

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
