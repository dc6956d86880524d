"""Audio loading (formats, rates, channels, bad files), raw PCM streams, and the synthetic test talks."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from alignheads.base.errors import AlignheadsError, DataFormatError
from alignheads.speech.audio import SAMPLE_RATE, iter_chunks, load_audio, read_pcm_stream, resample

ROOT = Path(__file__).resolve().parents[2]
TALKS = ROOT / "data" / "talks"


def tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(audio: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.fft.rfftfreq(audio.size, 1 / SAMPLE_RATE)[spec.argmax()])


# --- load_audio -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_formats_rates_and_channels_become_16k_mono(tmp_path, ext):
    left, right = tone(440, 44100), tone(440, 44100, amp=0.0)
    path = tmp_path / f"stereo.{ext}"
    sf.write(path, np.stack([left, right], axis=1), 44100)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - SAMPLE_RATE) <= 1200  # mp3/ogg add encoder padding
    assert abs(peak_hz(audio) - 440) < 3
    middle = audio[2000:-2000]
    assert 0.22 < np.abs(middle).max() < 0.28  # mean of a 0.5 tone and silence


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 48000])
def test_resampling_keeps_length_and_pitch(tmp_path, rate):
    path = tmp_path / "t.wav"
    sf.write(path, tone(1000, rate, seconds=2.0), rate, subtype="FLOAT")
    audio = load_audio(path)
    assert audio.size == 2 * SAMPLE_RATE
    assert abs(peak_hz(audio) - 1000) < 2


def test_16k_pcm_is_read_exactly(tmp_path):
    pcm = np.array([0, 1, -1, 16384, -32768, 32767], dtype=np.int16)
    sf.write(tmp_path / "x.wav", pcm, SAMPLE_RATE, subtype="PCM_16")
    np.testing.assert_array_equal(load_audio(tmp_path / "x.wav"), pcm.astype(np.float32) / 32768)


def test_resampler_removes_content_above_the_new_nyquist():
    high = tone(10000, 44100)  # above 8 kHz: a naive decimator would alias it to 6 kHz
    out = resample(high, 44100)
    assert np.abs(out[1000:-1000]).max() < 0.01
    assert np.abs(resample(tone(3000, 44100), 44100)[1000:-1000]).max() > 0.45


def test_silence_only_is_valid(tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(8000, dtype=np.int16), 8000)
    audio = load_audio(tmp_path / "quiet.wav")
    assert audio.size == SAMPLE_RATE and not audio.any()


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("empty.wav", b"", "empty"),
        ("corrupt.wav", b"RIFF\x10\x00\x00\x00WAVEfmt garbage" * 4, "cannot decode"),
        ("notes.txt", b"this is not audio at all, just text\n" * 20, "cannot decode"),
        ("weird.xyz", b"\x00\x01\x02\x03" * 100, "cannot decode"),
    ],
)
def test_bad_files_raise_naming_the_file(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AlignheadsError, match=problem) as err:
        load_audio(path)
    assert str(path) in str(err.value)


def test_zero_length_missing_and_nan_audio(tmp_path):
    sf.write(tmp_path / "zero.wav", np.zeros(0, dtype=np.int16), SAMPLE_RATE)
    with pytest.raises(AlignheadsError, match="zero length"):
        load_audio(tmp_path / "zero.wav")
    with pytest.raises(AlignheadsError, match="not found"):
        load_audio(tmp_path / "absent.flac")
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.1], dtype=np.float32), SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AlignheadsError, match="NaN"):
        load_audio(tmp_path / "nan.wav")


def test_truncated_flac_raises(tmp_path):
    sf.write(tmp_path / "t.flac", tone(300, SAMPLE_RATE, seconds=3.0), SAMPLE_RATE)
    data = (tmp_path / "t.flac").read_bytes()
    (tmp_path / "cut.flac").write_bytes(data[: len(data) // 2])
    with pytest.raises(AlignheadsError, match="cut.flac"):
        load_audio(tmp_path / "cut.flac")


def test_truncated_wav_warns_with_both_durations(tmp_path):
    """Reported: a truncated WAV decoded 2.7 of 8 s without a warning."""
    sf.write(tmp_path / "t.wav", tone(300, SAMPLE_RATE, seconds=8.0), SAMPLE_RATE)
    data = (tmp_path / "t.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 3])
    with pytest.warns(UserWarning, match=r"cut.wav: truncated WAV: its header declares 8.00 s .* holds 2.67 s"):
        audio = load_audio(tmp_path / "cut.wav")
    assert abs(audio.size / SAMPLE_RATE - 2.67) < 0.01
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_audio(tmp_path / "t.wav")  # a whole file: no warning


# --- PCM streams ----------------------------------------------------------------------------------


class Trickle(io.RawIOBase):
    """A pipe-like byte stream that returns at most `n` bytes per read."""

    def __init__(self, data: bytes, n: int):
        self.data, self.n = data, n

    def readable(self):
        return True

    def read(self, size=-1):
        size = self.n if size < 0 else min(size, self.n)
        block, self.data = self.data[:size], self.data[size:]
        return block


def test_pcm_stream_chunks_and_values():
    pcm = np.array([0, 16384, -32768, 32767, -16384] * 3, dtype="<i2")
    chunks = list(read_pcm_stream(io.BytesIO(pcm.tobytes()), chunk_samples=4))
    assert [c.size for c in chunks] == [4, 4, 4, 3]
    np.testing.assert_array_equal(np.concatenate(chunks), pcm.astype(np.float32) / 32768)
    assert chunks[0][1] == 0.5 and chunks[0][2] == -1.0


def test_pcm_stream_accumulates_short_reads():
    pcm = np.arange(-500, 500, dtype="<i2")
    chunks = list(read_pcm_stream(Trickle(pcm.tobytes(), 7), chunk_samples=128))
    assert [c.size for c in chunks[:-1]] == [128] * 7 and chunks[-1].size == 1000 - 7 * 128
    np.testing.assert_array_equal(np.concatenate(chunks), pcm / np.float32(32768))


def test_pcm_stream_uses_the_buffer_of_a_text_stream_and_warns_on_odd_bytes():
    class Stdin:
        name = "<stdin>"
        buffer = io.BytesIO(np.ones(10, dtype="<i2").tobytes())

    assert sum(c.size for c in read_pcm_stream(Stdin(), 4)) == 10
    with pytest.warns(UserWarning, match="mid-sample"):  # reported: found only after the whole run
        chunks = list(read_pcm_stream(io.BytesIO(b"\x01\x00\x02"), 4))
    assert [c.tolist() for c in chunks] == [[1 / 32768]]
    with pytest.raises(AlignheadsError, match="binary"):
        list(read_pcm_stream(io.StringIO("abc"), 4))
    with pytest.raises(AlignheadsError, match="positive"):
        list(read_pcm_stream(io.BytesIO(b""), 0))
    assert list(read_pcm_stream(io.BytesIO(b""), 4)) == []


def test_closed_stdin_or_a_terminal_is_a_clear_error():
    """Reported: a closed stdin gave an AttributeError traceback."""
    with pytest.raises(AlignheadsError, match=r"stdin\) is closed.*ffmpeg"):
        next(read_pcm_stream(None, 4))
    closed = io.BytesIO(b"\x00\x00")
    closed.close()
    with pytest.raises(AlignheadsError, match="is closed"):
        next(read_pcm_stream(closed, 4))

    class Terminal(io.BytesIO):
        name = "<stdin>"

        def isatty(self):
            return True

    with pytest.raises(AlignheadsError, match="<stdin> is a terminal"):
        next(read_pcm_stream(Terminal(), 4))


def test_iter_chunks_covers_the_audio():
    audio = np.arange(10, dtype=np.float32)
    chunks = list(iter_chunks(audio, 4))
    assert [c.tolist() for c in chunks] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


# --- the synthetic talks (data/talks) -------------------------------------------------------------


def _make_talks():
    spec = importlib.util.spec_from_file_location("make_talks", TALKS / "make_talks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("tokens", "text"),
    [
        ("Good morning , everyone .", "Good morning, everyone."),
        ("I do n't know , it 's late !", "I don't know, it's late!"),
        ('He said " no " , then left .', 'He said "no", then left.'),
        ("It 's ( mostly ) fine : 50 % off ?", "It's (mostly) fine: 50% off?"),
    ],
)
def test_detokenize(tokens, text):
    assert _make_talks().detokenize(tokens) == text


def test_read_talks_groups_by_talk_and_rejects_bad_lines(tmp_path):
    mk = _make_talks()
    good = tmp_path / "g.tsv"
    good.write_text(
        "talk04-s01\tHi .\tHallo .\t0-0\tx\ntalk05-s01\tYes !\tJa !\t0-0\tx\ntalk04-s02\tBye .\tTschüss .\t0-0\tx\n"
    )
    assert mk.read_talks(good) == {"talk04": [("talk04-s01", "Hi."), ("talk04-s02", "Bye.")],
                                   "talk05": [("talk05-s01", "Yes!")]}
    bad = tmp_path / "b.tsv"
    bad.write_text("talk04-s01\tHi .\tHallo .\n")
    with pytest.raises(DataFormatError, match="line 1.*5 tab-separated"):
        mk.read_talks(bad)
    bad.write_text("t4-1\tHi .\tHallo .\t0-0\tx\n")
    with pytest.raises(DataFormatError, match="talkNN-sMM"):
        mk.read_talks(bad)


def _manifest() -> dict:
    path = TALKS / "talks.json"
    if not path.is_file():
        pytest.skip(f"{path} not generated yet (run python data/talks/make_talks.py)")
    return json.loads(path.read_text())


def test_shipped_talks_match_their_manifest():
    manifest = _manifest()
    total = 0.0
    for name, talk in manifest["talks"].items():
        wav = TALKS / talk["wav"]
        assert hashlib.sha256(wav.read_bytes()).hexdigest() == talk["sha256"], name
        info = sf.info(wav)
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert info.frames / SAMPLE_RATE == pytest.approx(talk["duration"], abs=1e-3)
        lines = (TALKS / talk["transcript"]).read_text(encoding="utf-8").splitlines()
        assert lines == [s["text"] for s in talk["sentences"]]
        spans = [(s["start"], s["end"]) for s in talk["sentences"]]
        assert all(a < b for a, b in spans) and all(b1 < a2 for (_, b1), (a2, _) in zip(spans, spans[1:], strict=False))
        assert spans[-1][1] <= talk["duration"]
        total += talk["duration"]
    assert 40 <= total <= 150  # a minute or two of speech in all


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="espeak-ng and sox are not installed (apt-get install espeak-ng sox)")
def test_talk_synthesis_is_deterministic(tmp_path):
    mk = _make_talks()
    sentences = [("talk99-s01", "Hello there."), ("talk99-s02", "How are you today?")]
    first = mk.make_talk("talk99", sentences, tmp_path / "a", "en-us", 150, 0.5, 0.3)
    second = mk.make_talk("talk99", sentences, tmp_path / "b", "en-us", 150, 0.5, 0.3)
    assert first == second
    assert (tmp_path / "a" / "talk99.wav").read_bytes() == (tmp_path / "b" / "talk99.wav").read_bytes()
    assert (tmp_path / "a" / "talk99.txt").read_text() == "Hello there.\nHow are you today?\n"
    audio = load_audio(tmp_path / "a" / "talk99.wav")
    assert audio.size / SAMPLE_RATE == pytest.approx(first["duration"], abs=1e-3)
    s1, s2 = first["sentences"]
    assert 0.25 <= s1["start"] < s1["end"] < s2["start"] < s2["end"] <= first["duration"]


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="espeak-ng and sox are not installed (apt-get install espeak-ng sox)")
def test_shipped_talks_regenerate_identically(tmp_path):
    """With the same espeak-ng build the generator reproduces the committed audio byte for byte."""
    manifest = _manifest()
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    if version != manifest["tools"]["espeak-ng"]:
        pytest.skip(f"espeak-ng here is {version!r}, the talks were made with {manifest['tools']['espeak-ng']!r}")
    name, talk = next(iter(manifest["talks"].items()))
    sentences = [(s["id"], s["text"]) for s in talk["sentences"]]
    entry = _make_talks().make_talk(name, sentences, tmp_path, manifest["voice"], manifest["rate"],
                                    manifest["gap"], manifest["lead"])
    assert entry["sha256"] == talk["sha256"]
