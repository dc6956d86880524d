"""Command-line option groups shared by every subcommand, and how they turn into library objects.

Every command that reads a corpus takes the same data flags (`add_data_args` -> `read_data`), every
command that loads a model the same model flags (`add_model_args` -> `load`), and every command that
translates the same policy flags (`add_policy_args` -> `translator_config`).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from ..base.errors import AlignheadsError
from ..corpus.formats import FORMATS
from ..simul.config import POLICY_NAMES, AlignAttConfig, TranslatorConfig


# --- argument types: a value out of range is a usage error (exit 2) before anything loads -----------------
def _number(kind: type, low: float | None = None, strict: bool = False):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'a whole number' if kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if low is not None and (value <= low if strict else value < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {text}")
        return value

    return parse


positive_int = _number(int, 1)
nonnegative_int = _number(int, 0)
positive_float = _number(float, 0, strict=True)


def port(text: str) -> int:
    """A TCP port number, 0 (any free port) to 65535."""
    value = _number(int, 0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {value}")
    return value
nonnegative_float = _number(float, 0)
finite_float = _number(float)
DTYPES = ("auto", "float32", "bfloat16", "float16", "int8")  # alignheads.model.loader.DTYPES


def add_model_args(p: argparse.ArgumentParser, dtype: str | None = None) -> None:
    """--model, --device, --dtype (default `dtype`: None means float32 on CPU, bfloat16 on CUDA), --threads."""
    g = p.add_argument_group("model")
    g.add_argument("--model", default="embedded",
                   help="embedded | tiny-gemma3 | tiny-gemma4 | hub id (e.g. google/gemma-4-E4B-it) | local dir")
    g.add_argument("--device", help="cpu | cuda | cuda:N (default: cuda when available)")
    g.add_argument("--dtype", choices=DTYPES, default=dtype,
                   help="auto: on a CPU the float32 model with the exact screened output layer (same tokens and "
                   "attention, faster), on CUDA bfloat16; int8: also the decoder's linear layers in per-channel "
                   "int8 (attention changes); default: " + (dtype or "float32 on CPU, bfloat16 on CUDA"))
    g.add_argument("--threads", type=positive_int, help="torch CPU threads (1 is faster on a busy 2-core machine)")


def add_data_args(p: argparse.ArgumentParser, *, langs_required: bool = False, data_required: bool = True,
                  skip_long: bool = False) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=data_required, metavar="PATH", help="aligned corpus (any supported format)")
    g.add_argument("--format", choices=FORMATS, help="input format (default: detected)")
    g.add_argument("--src", required=langs_required, help="source language code, e.g. en")
    g.add_argument("--tgt", required=langs_required, help="target language code, e.g. de")
    g.add_argument("--gold", metavar="FILE", help="gold alignment file (talp / pharaoh formats)")
    g.add_argument("--tgt-file", metavar="FILE", help="target text file (pharaoh format; `align`: the target side)")
    g.add_argument("--swap", action="store_true", help="use the file's direction reversed (zh-en gold as en->zh)")
    g.add_argument("--limit", type=positive_int, help="use the first N pairs only")
    if skip_long:
        g.add_argument("--skip-long", action="store_true", help="skip pairs too long for the model's positions or "
                       "free memory (with a warning) instead of stopping")


def add_heads_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    g = p.add_argument_group("heads")
    g.add_argument("--heads", required=required, metavar="FILE",
                   help="head-set JSON from `alignheads score`, or 'published' (the package registry)")
    g.add_argument("--top-k", type=positive_int, help="use the first K heads of the head set (default: all)")


def add_policy_args(p: argparse.ArgumentParser, *, alignatt_only: bool = False, holdback: float = 0.0) -> None:
    """Policy flags; each defaults to the preset's (or TranslatorConfig's) value unless given."""
    from ..speech.presets import PRESETS

    a = AlignAttConfig()
    g = p.add_argument_group("policy")
    if not alignatt_only:
        g.add_argument("--policy", choices=list(POLICY_NAMES), default="alignatt")
        g.add_argument("--preset", choices=list(PRESETS), help="named translator settings (flags given override it)")
    g.add_argument("--border", type=int, help=f"AlignAtt border b: stop when a draft token attends source word >= "
                   f"N_accessible + b (default {a.border}; the paper's 1 is --preset paper)")
    g.add_argument("--rewind", type=nonnegative_int,
                   help=f"AlignAtt rewind gate in source words, 0 = off (default {a.rewind})")
    g.add_argument("--no-z-score", dest="z_score", action="store_false", default=None,
                   help="do not z-score attention over the draft tokens")
    g.add_argument("--median-width", type=positive_int, help=f"median filter width along the source, 1 = off "
                   f"(default {a.median_width})")
    g.add_argument("--max-draft", type=positive_int, help=f"draft tokens per update (default {a.max_draft})")
    if alignatt_only:
        return
    t = TranslatorConfig()
    g.add_argument("--wait-k", type=positive_int,
                   help=f"wait-k: source words before the first target unit (default {t.wait_k})")
    g.add_argument("--cut-last", type=nonnegative_int, help=f"cut-last-x: draft words withheld (default {t.cut_last})")
    g.add_argument("--holdback", type=nonnegative_float,
                   help="seconds a heard word must be old before it counts as accessible "
                   f"(default {holdback:g})")
    g.add_argument("--final-max-tokens", type=positive_int,
                   help=f"length cap of a sentence's final translation (default {t.final_max_tokens})")


def translator_config(args: argparse.Namespace, base: TranslatorConfig | None = None) -> TranslatorConfig:
    """`base` (default TranslatorConfig()) with --preset applied, then every policy flag that was given."""
    from ..speech.pipeline import SETTINGS, configure_translator

    return configure_translator(base, getattr(args, "preset", None), **{k: getattr(args, k, None) for k in SETTINGS})


def alignatt_config(args: argparse.Namespace) -> AlignAttConfig:
    return translator_config(args).alignatt


def setup_threads(args: argparse.Namespace, default: int | None = None) -> None:
    """Apply --threads (else `default`, when given) before any model work."""
    threads = getattr(args, "threads", None) or default
    if threads:
        import torch

        if threads < 1:
            raise AlignheadsError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)


def check_device(device: str | None) -> None:
    """A clear error for a device torch does not know or this machine does not have (before loading)."""
    if device is None:
        return
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise AlignheadsError(f"--device {device!r} is not a device (cpu, cuda, cuda:N, mps)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise AlignheadsError(f"--device {device}: no CUDA GPU is available here (torch {torch.__version__})")


def load(args: argparse.Namespace):
    """The model the model flags name."""
    from ..model.loader import load_model

    setup_threads(args)
    check_device(args.device)
    import sys

    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    print(f"model {lm.facts.model_id} ({lm.dtype})", file=sys.stderr)
    return lm


def out_dir(args: argparse.Namespace) -> Path:
    """--out as a folder: created and checked writable now, not after the run."""
    from ..base.fileio import ensure_dir

    return ensure_dir(args.out, "--out folder")


def inputs(args: argparse.Namespace) -> list:
    """Every file the command reads (so that no output replaces one of them)."""
    return [getattr(args, k, None) for k in ("data", "gold", "tgt_file", "heads", "word_times", "ref", "audio", "input")
            if isinstance(getattr(args, k, None), str) and getattr(args, k) not in ("published", "auto", "-")]


def out_file(args: argparse.Namespace) -> Path | None:
    """--out as a file (None when not given): its folder created and checked writable now, never one of the inputs."""
    from ..base.fileio import ensure_file_writable, refuse_overwriting

    if not args.out:
        return None
    refuse_overwriting(args.out, inputs(args))
    return ensure_file_writable(args.out, "--out file")


def heads_spec(args: argparse.Namespace):
    """--heads, with a head-set file read now (its errors before any model loads); 'published' and None as given."""
    from ..heads.headset import load_headset

    spec = getattr(args, "heads", None)
    return spec if spec in (None, "published") else load_headset(spec)


def input_file(path: str | os.PathLike, what: str) -> Path:
    """An input file that must exist and be readable."""
    p = Path(path)
    if not p.is_file() or not os.access(p, os.R_OK):
        raise AlignheadsError(f"{p}: {what} " + ("is a folder" if p.is_dir() else "not found or not readable"))
    return p


def _langs(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """The languages of the file itself (before --swap)."""
    return (args.tgt, args.src) if args.swap else (args.src, args.tgt)


def _check_langs(args: argparse.Namespace, src: str, tgt: str) -> None:
    from ..base.languages import get_language

    for side, want, got in (("source", args.src, src), ("target", args.tgt, tgt)):
        if want and got and get_language(want).code != got:
            raise AlignheadsError(f"{args.data}: {side} language is {got!r}, but --{side[:3]} {want!r} was given"
                                  + ("" if args.swap else " (use --swap to reverse the file's direction)"))


def _check_limit(args: argparse.Namespace) -> int | None:
    limit = getattr(args, "limit", None)
    if limit is not None and limit < 1:
        raise AlignheadsError(f"--limit must be >= 1, got {limit}")
    return limit


def read_data(args: argparse.Namespace, path: str | None = None):
    """The corpus the data flags name (`path` overrides --data), in the direction --src/--tgt/--swap ask for."""
    from ..corpus.formats import read_corpus

    limit = _check_limit(args)
    path = path or args.data
    src, tgt = _langs(args)
    corpus = read_corpus(path, args.format, src_lang=src, tgt_lang=tgt, gold=args.gold, tgt=args.tgt_file)
    if args.swap:
        corpus = corpus.swap()
    _check_langs(args, corpus.src_lang, corpus.tgt_lang)
    return corpus.head(limit) if limit else corpus


def read_parallel_data(args: argparse.Namespace):
    """Plain parallel text (for `align`) from the data flags: --data (pairs, or the source side with --tgt-file)."""
    from ..corpus.silver import read_parallel

    limit = _check_limit(args)
    src, tgt = _langs(args)
    text = read_parallel((args.data, args.tgt_file) if args.tgt_file else args.data, src, tgt)
    if args.swap:
        text = text.swap()
    _check_langs(args, text.src_lang, text.tgt_lang)
    return text.head(limit) if limit else text
