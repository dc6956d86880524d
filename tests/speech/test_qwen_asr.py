"""Qwen3-ASR backend on transformers 5.x, with tiny random models built from the package's own config classes.

Each silent incompatibility has a test that fails without its shim: cached vs uncached generate
(KV cache handed over as `cache=`), save -> load identity and the sinusoid table (buffer left
uninitialised), the package's processor in the loaders (AutoProcessor resolving to the native one).
"""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from alignheads.base.errors import AlignheadsError, ModelSpecError
from alignheads.speech import qwen_asr as Q
from alignheads.speech import tiny_asr as tiny
from alignheads.speech.asr import Word, load_asr
from alignheads.speech.qwen_compat import apply_compat

if importlib.util.find_spec("qwen_asr") is None:  # not importorskip: the package only imports after apply_compat()
    pytest.skip("optional extra [qwen]: pip install --no-deps qwen-asr==0.0.6", allow_module_level=True)

SECONDS = 3.0


@pytest.fixture(scope="module")
def pkg():
    """The package's classes, imported through the shims (only when these tests run, not at collection)."""
    apply_compat()
    from qwen_asr.core.transformers_backend import Qwen3ASRForConditionalGeneration, Qwen3ASRProcessor
    from qwen_asr.core.transformers_backend.processing_qwen3_asr import _get_feat_extract_output_lengths
    from qwen_asr.inference.qwen3_forced_aligner import Qwen3ForceAlignProcessor

    return SimpleNamespace(
        Model=Qwen3ASRForConditionalGeneration,
        Processor=Qwen3ASRProcessor,
        audio_tokens=_get_feat_extract_output_lengths,
        AlignText=Qwen3ForceAlignProcessor,
    )


def _audio(seconds: float = SECONDS, seed: int = 1) -> np.ndarray:
    return (np.random.RandomState(seed).randn(int(seconds * 16000)) * 0.1).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_dirs(pkg, tmp_path_factory):
    return tiny.save_tiny_qwen_models(tmp_path_factory.mktemp("qwen_tiny"))


@pytest.fixture(scope="module")
def processor(pkg, tiny_dirs):
    return pkg.Processor.from_pretrained(tiny_dirs[0])


@pytest.fixture(scope="module")
def backend(tiny_dirs):
    return Q.QwenBackend(str(tiny_dirs[0]), str(tiny_dirs[1]), max_new_tokens=16)


def _asr_inputs(processor, audio):
    messages = [{"role": "system", "content": ""}, {"role": "user", "content": [{"type": "audio", "audio": ""}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return processor(text=[prompt + "language English<asr_text>"], audio=[audio], return_tensors="pt", padding=True)


def test_forward_is_finite(pkg, processor):
    torch.manual_seed(0)
    model = pkg.Model(tiny.tiny_qwen_config(processor)).eval()
    inputs = _asr_inputs(processor, _audio())
    with torch.no_grad():
        logits = model.thinker(**inputs).logits
    assert logits.shape == (*inputs["input_ids"].shape, len(processor.tokenizer))
    assert torch.isfinite(logits).all()


def test_cached_generate_equals_uncached_and_greedy_forward(pkg, tiny_dirs, processor):
    model = pkg.Model.from_pretrained(tiny_dirs[0]).eval()
    inputs = _asr_inputs(processor, _audio())
    n = inputs["input_ids"].shape[1]
    cached = model.generate(**inputs, max_new_tokens=10).sequences[:, n:]
    uncached = model.generate(**inputs, max_new_tokens=10, use_cache=False).sequences[:, n:]
    assert cached.shape == (1, 10)
    assert torch.equal(cached, uncached)
    # and both equal a hand-written greedy loop over full forwards (no cache involved at all)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    with torch.no_grad():
        for _ in range(4):
            out = model.thinker(
                input_ids=ids,
                attention_mask=mask,
                input_features=inputs["input_features"],
                feature_attention_mask=inputs["feature_attention_mask"],
            )
            ids = torch.cat([ids, out.logits[:, -1].argmax(-1, keepdim=True)], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    assert torch.equal(ids[:, n:], cached[:, :4])


def test_save_load_is_identical_and_restores_the_sinusoids(pkg, tmp_path, processor):
    torch.manual_seed(3)
    model = pkg.Model(tiny.tiny_qwen_config(processor)).eval()
    model.save_pretrained(tmp_path)
    loaded = pkg.Model.from_pretrained(tmp_path).eval()
    table = loaded.thinker.audio_tower.positional_embedding.positional_embedding
    assert torch.equal(table, model.thinker.audio_tower.positional_embedding.positional_embedding)
    length, channels = table.shape
    rates = np.exp(-np.log(10000.0) / (channels // 2 - 1) * np.arange(channels // 2))
    angles = np.arange(length)[:, None] * rates[None, :]
    np.testing.assert_allclose(table.numpy(), np.concatenate([np.sin(angles), np.cos(angles)], 1), atol=2e-3)
    assert torch.equal(loaded.thinker.model.rotary_emb.inv_freq, model.thinker.model.rotary_emb.inv_freq)
    inputs = _asr_inputs(processor, _audio())
    with torch.no_grad():
        assert torch.equal(model.thinker(**inputs).logits, loaded.thinker(**inputs).logits)


def test_tied_embeddings_follow_the_text_config(pkg, tmp_path, processor):
    for tie in (False, True):
        torch.manual_seed(4)
        model = pkg.Model(tiny.tiny_qwen_config(processor, tie_word_embeddings=tie))
        model.save_pretrained(tmp_path / str(tie))
        loaded = pkg.Model.from_pretrained(tmp_path / str(tie))
        head, embed = loaded.thinker.lm_head.weight, loaded.thinker.model.embed_tokens.weight
        assert (head.data_ptr() == embed.data_ptr()) is tie
        assert torch.equal(head, model.thinker.lm_head.weight)


def test_loaders_use_the_package_processor(pkg, backend, processor):
    assert type(backend.model.processor) is pkg.Processor
    assert type(backend.model.forced_aligner.processor) is pkg.Processor
    audio = _audio()
    inputs = _asr_inputs(processor, audio)
    assert "feature_attention_mask" in inputs and "input_features_mask" not in inputs
    n_audio = int((inputs["input_ids"] == processor.tokenizer.convert_tokens_to_ids("<|audio_pad|>")).sum())
    assert n_audio == int(pkg.audio_tokens(inputs["feature_attention_mask"].sum(-1)))
    out = backend.model.model.generate(**inputs, max_new_tokens=3)  # the package's generate accepts them
    assert out.sequences.shape[1] == inputs["input_ids"].shape[1] + 3


def test_forced_aligner_times_are_monotone_and_inside_the_audio(backend):
    audio = _audio()
    (result,) = backend.model.forced_aligner.align(
        audio=(audio, 16000), text="Hello, big world: it's 2 o'clock again!", language="English"
    )
    assert [it.text for it in result] == ["Hello", "big", "world", "it's", "2", "o'clock", "again"]
    times = [t for it in result for t in (it.start_time, it.end_time)]
    assert times == sorted(times)
    assert 0.0 <= times[0] and times[-1] <= SECONDS


def test_words_from_units_puts_punctuation_back(pkg):
    units = [("Hello", 0.1, 0.4), ("world", 0.5, 0.9), ("it's", 1.0, 1.2), ("fine", 1.3, 1.5)]
    words = Q.words_from_units("« Hello, world — it's fine. »", units, spaced=True)
    assert words == [("« Hello,", 0.1, 0.4), ("world —", 0.5, 0.9), ("it's", 1.0, 1.2), ("fine. »", 1.3, 1.5)]


def test_words_from_units_chinese_is_per_character_with_the_package_units(pkg):
    text = "你好，世界。我用GPT 4！"
    units, _ = pkg.AlignText().encode_timestamp(text, "Chinese")
    assert units == ["你", "好", "世", "界", "我", "用", "GPT", "4"]
    timed = [(u, i * 0.2, i * 0.2 + 0.1) for i, u in enumerate(units)]
    words = Q.words_from_units(text, timed, spaced=False)
    assert [w for w, _, _ in words] == ["你", "好，", "世", "界。", "我", "用", "GPT", "4！"]
    assert [(s, e) for _, s, e in words] == [(s, e) for _, s, e in timed]


def test_words_from_units_japanese_uses_the_package_word_units(pkg):
    text = "今日は２０２４年です。はい、良い天気です！"
    units, _ = pkg.AlignText().encode_timestamp(text, "Japanese")  # nagisa; it writes "２" as "2"
    assert "2" in units
    timed = [(u, float(i), i + 0.5) for i, u in enumerate(units)]
    words = Q.words_from_units(text, timed, spaced=False)
    assert "".join(w for w, _, _ in words) == text
    assert [(s, e) for _, s, e in words] == [(s, e) for _, s, e in timed]
    assert sum(w.endswith(("。", "！")) for w, _, _ in words) == 2


def test_words_from_units_falls_back_to_units_when_they_do_not_spell_the_text():
    units = [("abc", 0.0, 0.1)]
    with pytest.warns(UserWarning, match="do not spell"):
        assert Q.words_from_units("xyz.", units, spaced=True) == units


def test_backend_returns_words_on_the_stream_clock(backend):
    audio, offset = _audio(), 12.5
    words = backend.transcribe(audio, "en", offset=offset)
    assert words and all(isinstance(w, Word) and w.text == w.text.strip() and w.text for w in words)
    assert all(offset <= w.start <= w.end <= offset + SECONDS for w in words)
    starts = [w.start for w in words]
    assert starts == sorted(starts)
    # the words carry exactly the transcript's word characters (the text itself is noise from random weights)
    text = backend.model.transcribe(audio=(audio, 16000), language="English", return_time_stamps=False)[0].text
    assert "".join(c for w in words for c in w.text if Q._kept(c)) == "".join(c for c in text if Q._kept(c))
    shifted = backend.transcribe(audio, "en", offset=0.0)
    assert [(w.text, round(w.start + offset, 6), round(w.end + offset, 6)) for w in shifted] == [
        (w.text, round(w.start, 6), round(w.end, 6)) for w in words
    ]


def test_backend_rejects_bad_input(backend):
    with pytest.raises(AlignheadsError, match="unknown language"):
        backend.transcribe(_audio(), "xx")
    with pytest.raises(AlignheadsError, match="does not support Japanese"):
        backend.transcribe(_audio(), "ja")
    with pytest.raises(AlignheadsError, match="mono"):
        backend.transcribe(np.zeros((2, 16000), np.float32), "en")
    assert backend.transcribe(np.zeros(0, np.float32), "en") == []


def test_load_asr_registry_and_missing_models(tiny_dirs, tmp_path):
    backend = load_asr("qwen", asr_model=str(tiny_dirs[0]), aligner_model=str(tiny_dirs[1]), max_new_tokens=2)
    assert isinstance(backend, Q.QwenBackend)
    with pytest.raises(ModelSpecError, match="cannot load Qwen3-ASR"):
        Q.QwenBackend(str(tmp_path / "absent"), str(tiny_dirs[1]))
