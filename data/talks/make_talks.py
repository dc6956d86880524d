"""Synthesise the English test talks: espeak-ng speech of the gold test sentences, 16 kHz mono wav + transcripts.

Reads `data/gold/en-de.test.tsv` (id `talkNN-sMM`, 5 tab-separated fields, the 2nd the English
words space-tokenised), speaks the first sentences of each chosen talk one by one with a fixed
espeak-ng voice and rate, converts each with sox to 16 kHz mono 16-bit (no dither, so the output is
byte-for-byte repeatable), joins them with fixed pauses and writes, per talk:

    talkNN.wav   the audio
    talkNN.txt   the transcript, one sentence per line

and `talks.json`: sentence ids, each sentence's speech span in the audio, durations, tool versions.
Needs the Debian packages espeak-ng and sox. Usage: python data/talks/make_talks.py [--help]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
try:
    import alignheads  # noqa: F401
except ImportError:  # run from a checkout without the package installed
    sys.path.insert(0, str(ROOT))

from alignheads.base.errors import AlignheadsError, DataFormatError  # noqa: E402
from alignheads.base.fileio import atomic_open, write_json, write_text  # noqa: E402
from alignheads.speech.audio import SAMPLE_RATE, load_audio  # noqa: E402

DEFAULT_GOLD = ROOT / "data" / "gold" / "en-de.test.tsv"
DEFAULT_OUT = Path(__file__).resolve().parent
_ID = re.compile(r"^(talk\d+)-s(\d+)$")
_SPEECH_LEVEL = 0.01  # |sample| above this counts as speech when measuring sentence spans


def detokenize(tokens: str) -> str:
    """Join space-tokenised English back into plain text (punctuation, clitics, paired quotes)."""
    out, opened = [], False
    for tok in tokens.split():
        if tok == '"':  # straight double quotes alternate: opening sticks right, closing sticks left
            out.append(' "' if not opened else '"')
            opened = not opened
        elif out and out[-1] == ' "':
            out.append(tok)
        else:
            out.append(" " + tok)
    s = "".join(out).strip()
    s = re.sub(r" ([.,;:!?%)\]}])", r"\1", s)
    s = re.sub(r"([(\[{$]) ", r"\1", s)
    s = re.sub(r" (n't|'s|'re|'ve|'ll|'d|'m)\b", r"\1", s, flags=re.IGNORECASE)
    return s


def read_talks(gold: Path) -> dict[str, list[tuple[str, str]]]:
    """Sentences per talk from the gold test set: {"talk04": [(id, English text), ...]} in file order."""
    if not gold.is_file():
        raise AlignheadsError(f"{gold}: gold test set not found (it provides the talk sentences)")
    talks: dict[str, list[tuple[str, str]]] = {}
    for lineno, line in enumerate(gold.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 5:
            raise DataFormatError(str(gold), lineno, f"expected 5 tab-separated fields, found {len(fields)}")
        m = _ID.match(fields[0])
        if not m:
            raise DataFormatError(str(gold), lineno, f"id {fields[0]!r} is not of the form talkNN-sMM")
        text = detokenize(fields[1])
        if not text:
            raise DataFormatError(str(gold), lineno, "empty English sentence (field 2)")
        talks.setdefault(m.group(1), []).append((fields[0], text))
    return talks


def _tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        raise AlignheadsError(f"{cmd[0]} is needed to make the talks (apt-get install espeak-ng sox): {e}") from None
    return out.strip().splitlines()[0]


def speak(text: str, voice: str, rate: int, workdir: Path) -> np.ndarray:
    """One sentence spoken by espeak-ng and converted by sox to float32 mono 16 kHz."""
    raw, conv = workdir / "espeak.wav", workdir / "sox.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(raw), "--stdin"],
                   input=text.encode("utf-8"), check=True, capture_output=True)
    # -D: no dither, so the conversion is deterministic
    subprocess.run(["sox", "-D", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(conv)],
                   check=True, capture_output=True)
    return load_audio(conv)


def speech_span(audio: np.ndarray) -> tuple[int, int]:
    """First and one-past-last sample louder than the speech level."""
    loud = np.flatnonzero(np.abs(audio) > _SPEECH_LEVEL)
    return (int(loud[0]), int(loud[-1]) + 1) if loud.size else (0, 0)


def make_talk(name: str, sentences: list[tuple[str, str]], out: Path, voice: str, rate: int, gap_s: float,
              lead_s: float) -> dict:
    """Synthesise one talk into `out`/<name>.wav and .txt; return its manifest entry."""
    gap = np.zeros(round(gap_s * SAMPLE_RATE), dtype=np.float32)
    pieces = [np.zeros(round(lead_s * SAMPLE_RATE), dtype=np.float32)]
    pos = pieces[0].size
    entries = []
    with tempfile.TemporaryDirectory() as tmp:
        for sid, text in sentences:
            audio = speak(text, voice, rate, Path(tmp))
            a, b = speech_span(audio)
            entries.append({"id": sid, "text": text, "start": round((pos + a) / SAMPLE_RATE, 3),
                            "end": round((pos + b) / SAMPLE_RATE, 3)})
            pieces += [audio, gap]
            pos += audio.size + gap.size
    talk = np.concatenate(pieces)
    pcm = np.clip(np.round(talk * 32768.0), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    sf.write(buf, pcm, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    data = buf.getvalue()
    with atomic_open(out / f"{name}.wav", "wb") as f:
        f.write(data)
    write_text(out / f"{name}.txt", "".join(text + "\n" for _, text in sentences))
    return {"wav": f"{name}.wav", "transcript": f"{name}.txt", "duration": round(pcm.size / SAMPLE_RATE, 3),
            "sha256": hashlib.sha256(data).hexdigest(), "sentences": entries}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gold", type=Path, default=DEFAULT_GOLD, help="gold test set TSV (default: %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory (default: %(default)s)")
    p.add_argument("--talks", nargs="+", default=["talk04", "talk05", "talk06"], help="talk ids to synthesise")
    p.add_argument("--sentences", type=int, default=6, help="first N sentences of each talk (default: 6)")
    p.add_argument("--voice", default="en-us", help="espeak-ng voice (default: %(default)s)")
    p.add_argument("--rate", type=int, default=160, help="espeak-ng words per minute (default: %(default)s)")
    p.add_argument("--gap", type=float, default=0.5, help="pause between sentences, seconds (default: 0.5)")
    p.add_argument("--lead", type=float, default=0.3, help="silence before the first sentence, seconds")
    args = p.parse_args(argv)
    try:
        versions = {"espeak-ng": _tool_version(["espeak-ng", "--version"]), "sox": _tool_version(["sox", "--version"])}
        talks = read_talks(args.gold)
        missing = [t for t in args.talks if t not in talks]
        if missing:
            raise AlignheadsError(f"{args.gold}: no sentences for {', '.join(missing)} (found {', '.join(talks)})")
        manifest = {"source": args.gold.name, "voice": args.voice, "rate": args.rate, "gap": args.gap,
                    "lead": args.lead, "sample_rate": SAMPLE_RATE, "tools": versions, "talks": {}}
        for name in args.talks:
            chosen = talks[name][: args.sentences]
            manifest["talks"][name] = make_talk(name, chosen, args.out, args.voice, args.rate, args.gap, args.lead)
            print(f"{name}: {len(chosen)} sentences, {manifest['talks'][name]['duration']:.1f} s")
        write_json(args.out / "talks.json", manifest)
    except AlignheadsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
        print("error: needs espeak-ng and sox (apt-get install espeak-ng sox libsox-fmt-all)", file=sys.stderr)
        sys.exit(1)
    sys.exit(main())
