"""TransformerLens bridge: hook_pattern equals alignheads' replayed rows; the caller's model is left untouched;
multimodal classes are refused before anything boots (no torchvision install). Skips without transformer-lens."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from alignheads.corpus.pairs import SentencePair
from alignheads.heads.scoring import teacher_forced_prompt
from alignheads.lab import tlens
from alignheads.model.loader import LoadedModel, model_facts
from alignheads.model.prompts import PromptLayout

needs_tl = pytest.mark.skipif(not tlens.available(), reason="transformer-lens is not installed (optional extra)")

PAIR = SentencePair(
    "t1",
    ("In", "this", "talk", "we", "present", "a", "simple", "method", "."),
    ("In", "diesem", "Vortrag", "stellen", "wir", "eine", "einfache", "Methode", "vor", "."),
    {(0, 0), (1, 1), (2, 2), (4, 3), (3, 4), (5, 5), (6, 6), (7, 7), (4, 8), (8, 9)},
    set(),
)


@pytest.fixture(scope="module")
def tiny_multimodal() -> LoadedModel:
    """A tiny random Gemma-3 image-text model (the class family Gemma-4 *-it loads as)."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

    from alignheads.model.tiny import tiny_tokenizer

    tok = tiny_tokenizer()
    text = Gemma3TextConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                            num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16)
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14)
    cfg = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4, image_token_index=3,
                       boi_token_index=4, eoi_token_index=5)
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(cfg).eval()
    return LoadedModel(model, tok, model_facts(model, tok, "tiny-gemma3-multimodal"), "tiny-gemma3-multimodal")


def test_multimodal_class_is_refused_before_booting(tiny_multimodal):
    had_torchvision = importlib.util.find_spec("torchvision") is not None
    assert tlens.is_multimodal(tiny_multimodal.model)
    with pytest.raises(tlens.BridgeError, match="multimodal class"):
        tlens.boot_bridge(tiny_multimodal)
    assert (importlib.util.find_spec("torchvision") is not None) == had_torchvision


def test_text_models_are_not_multimodal(tiny3, tiny4, tiny_multimodal):
    assert not tlens.is_multimodal(tiny3.model)
    assert not tlens.is_multimodal(tiny4.model)
    assert "multimodal class Gemma3ForConditionalGeneration" in tlens.unavailable_reason(tiny_multimodal)
    expected = None if tlens.available() else "transformer-lens is not installed"
    reason = tlens.unavailable_reason(tiny4)
    assert reason == expected or reason.startswith(expected)


@needs_tl
@pytest.mark.parametrize("spec", ["tiny3", "tiny4"])
def test_hook_pattern_equals_replayed_rows(spec, request):
    """Every head of every layer (sliding, full and Gemma-4's KV-shared layers) at every target token."""
    lm = request.getfixturevalue(spec)
    bridge = tlens.boot_bridge(lm)
    layout = PromptLayout.for_tokenizer(lm.tokenizer, "en", "de")
    prompt = teacher_forced_prompt(lm, layout, PAIR)
    assert len(prompt) > 16  # longer than the tiny models' sliding window, so the window mask matters
    heads = [(layer, head) for layer in range(lm.facts.num_layers) for head in range(lm.facts.num_heads)]
    table = tlens.compare_patterns(lm, bridge, prompt, heads)
    assert len(table) == len(heads)
    assert table["rows"].eq(sum(len(t) for t in prompt.tgt_tokens)).all()
    assert table["max_abs_diff"].max() < 1e-4
    assert table["argmax_agree"].min() == 1.0


@needs_tl
def test_bridge_leaves_the_callers_model_alone(tiny4):
    ids = torch.tensor([tiny4.tokenizer("In this talk we present a simple method.")["input_ids"]])
    with torch.no_grad():
        before = tiny4.model(ids).logits.clone()
    impl = tiny4.model.config._attn_implementation
    bridge = tlens.boot_bridge(tiny4)
    assert tiny4.model.config._attn_implementation == impl
    assert all(p is not q for p, q in zip(tiny4.model.parameters(), bridge.original_model.parameters(), strict=False))
    with torch.no_grad():
        assert torch.equal(tiny4.model(ids).logits, before)
    layout = PromptLayout.for_tokenizer(tiny4.tokenizer, "en", "de")
    table = tlens.compare_on_pair(tiny4, bridge, PAIR, [(2, 1)], layout)
    assert table["max_abs_diff"].iloc[0] < 1e-4


@needs_tl
def test_auto_install_is_disabled_only_while_booting():
    from transformer_lens.model_bridge.sources.transformers import helpers

    original = helpers._ensure_torchvision
    with tlens._no_auto_install():
        assert helpers._ensure_torchvision() is False
    assert helpers._ensure_torchvision is original


@needs_tl
def test_bad_heads_and_hooks_are_clear_errors(tiny4):
    bridge = tlens.boot_bridge(tiny4)
    with pytest.raises(tlens.BridgeError, match="no hook"):
        tlens.hook_patterns(bridge, [1, 2, 3], [tiny4.facts.num_layers])
    prompt = teacher_forced_prompt(tiny4, PromptLayout.for_tokenizer(tiny4.tokenizer, "en", "de"), PAIR)
    with pytest.raises(tlens.BridgeError, match="no heads"):
        tlens.compare_patterns(tiny4, bridge, prompt, [])
