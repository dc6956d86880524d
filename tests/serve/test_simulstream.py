"""The SimulStream adapter runs our cascade inside SimulStream's own message processor."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("simulstream", reason="SimulStream is an optional extra: pip install -e '.[simulstream]'")

from simulstream.config import yaml_config  # noqa: E402
from simulstream.server.message_processor import MessageProcessor  # noqa: E402
from simulstream.server.speech_processors import build_speech_processor  # noqa: E402

from alignheads.speech.audio import SAMPLE_RATE, load_audio  # noqa: E402
from tests.conftest import ROOT  # noqa: E402


@pytest.mark.slow  # real whisper inside SimulStream's own harness
def test_simulstream_harness_drives_the_cascade(tmp_path):
    cfg = tmp_path / "alignheads.yaml"
    cfg.write_text("type: alignheads.serve.simulstream.AlignheadsSpeechProcessor\n"
                   "speech_chunk_size: 1.5\nmodel: tiny-gemma3\npolicy: wait-k\nasr: whisper\n")
    processor = build_speech_processor(yaml_config(str(cfg)))
    assert processor.speech_chunk_size == 1.5
    mp = MessageProcessor(0, processor)
    mp.process_metadata({"sample_rate": SAMPLE_RATE, "source_lang": "en", "target_lang": "it"})
    audio = load_audio(ROOT / "data" / "talks" / "talk04.wav")[: 7 * SAMPLE_RATE]
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    outputs = []
    step = int(1.5 * SAMPLE_RATE) * 2
    for i in range(0, len(pcm), step):
        out = mp.process_speech(pcm[i:i + step])
        if out is not None:
            outputs.append(out)
    outputs.append(mp.end_of_stream())
    tokens = [t for o in outputs for t in o.new_tokens]
    assert tokens and all(not o.deleted_tokens for o in outputs)  # append-only
    assert json.loads(outputs[-1].strings_to_json())["deleted"] == ""
    assert processor.tokens_to_string(["a", "b"]) == "a b"
