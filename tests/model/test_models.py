"""Model loading, the facts record and the artifact cache."""

from __future__ import annotations

import json

import pytest
import torch

from alignheads.base.errors import ModelSpecError
from alignheads.model.loader import load_model


def test_tiny_gemma4_facts_describe_its_attention(tiny4):
    f = tiny4.facts
    assert (f.num_layers, f.num_heads) == (6, 4)
    assert f.head_dims == (16, 16, 32, 16, 16, 32)
    assert f.layer_types[2] == "full_attention" and f.layer_types[0] == "sliding_attention"
    assert f.kv_shared == {4: 3, 5: 2}
    assert f.num_kv_heads == (2,) * 6 and f.kv_head(0, 3) == 1
    assert f.has_chat_template and len(f.chat_template_sha256) == 64
    assert json.loads(json.dumps(f.to_dict()))["kv_shared"] == {"4": 3, "5": 2}


def test_tiny_gemma3_facts(tiny3):
    f = tiny3.facts
    assert f.architecture == "Gemma3ForCausalLM" and f.kv_shared == {}
    assert f.layer_types.count("full_attention") == 1 and f.sliding_window == 16


def test_tiny_tokenizer_has_offsets_and_is_offline(tiny3):
    enc = tiny3.tokenizer("Hallo Welt 科学家", return_offsets_mapping=True, add_special_tokens=False)
    assert len(enc["offset_mapping"]) == len(enc["input_ids"]) > 3
    assert tiny3.tokenizer.decode(enc["input_ids"]) == "Hallo Welt 科学家"


def test_missing_local_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ModelSpecError, match="does not exist"):
        load_model(str(tmp_path / "nope" / "model"))


def test_unknown_hub_id_offline_is_a_clear_error():
    with pytest.raises(ModelSpecError, match="cannot load model"):
        load_model("no-such-org/no-such-model-alignheads")


def test_embedded_loads_from_cache_with_facts(embedded):
    f = embedded.facts
    assert (f.num_layers, f.num_heads, f.num_kv_heads[0], f.head_dims[0]) == (18, 4, 1, 256)
    assert [i for i, t in enumerate(f.layer_types) if t == "full_attention"] == [5, 11, 17]
    assert f.sliding_window == 512 and not f.has_chat_template
    assert embedded.model.dtype == torch.float32

