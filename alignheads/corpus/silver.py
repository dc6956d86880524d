"""Silver word alignments with SimAlign, and the evaluation of any aligner against gold.

`align_corpus` word-aligns pre-tokenised parallel sentences with SimAlign's matching
algorithms (PyPI `simalign` 0.4: argmax intersection `inter`, `itermax`, max-weight matching
`mwmf`) over a multilingual encoder's hidden states, at SimAlign's subword level, and returns
a `Corpus` whose sure links are the silver links (`corpus.meta["silver"]` records how).
The encoder is `embedded` (multilingual-e5-small rebuilt by `alignheads.corpus.encoder`), a local
directory or a hub id SimAlign accepts (`bert-base-multilingual-cased`, `xlm-roberta-base`).

Only SimAlign's embedding step is replaced (`simalign.EmbeddingLoader` embeds one pair per
forward pass and maps subwords by assuming exactly one special token at each end): here
sentences are batched, the token -> word map comes from the fast tokenizer's `word_ids()`, only
the layers up to `layer` are run, and over-long sentences fail loudly instead of being truncated.
tests/corpus/test_silver.py checks that the links equal those of SimAlign's own `SentenceAligner`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..base.errors import AlignheadsError, DataFormatError, ModelSpecError
from ..base.languages import get_language
from ..base.metrics import aer_metrics, alignment_counts
from .encoder import EMBEDDED_ENCODER, load_encoder, resolve_encoder
from .formats import _read_lines, read_corpus
from .pairs import Corpus, SentencePair

METHODS = ("inter", "itermax", "mwmf")
# Families whose hidden_states[layer] equals the output of a model cut to `layer` layers (no final norm)
# and whose model class takes `add_pooling_layer`.
_BERT_LIKE = {"bert", "roberta", "xlm-roberta", "camembert"}

Words = tuple[str, ...]


def _simalign():
    try:
        from simalign import SentenceAligner
    except ImportError as e:  # pragma: no cover - simalign is a dependency
        raise AlignheadsError("silver alignments need `pip install --no-deps simalign==0.4`") from e
    return SentenceAligner


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise AlignheadsError(f"unknown SimAlign method {method!r}; choose one of {', '.join(METHODS)}")
    return method


# ---------------------------------------------------------------- aligner


class SilverAligner:
    """A loaded encoder plus SimAlign's matching: word lists in, 0-indexed (src, tgt) links out."""

    def __init__(self, encoder: str = EMBEDDED_ENCODER, *, layer: int = 8, device: str = "cpu",
                 batch_size: int = 32):
        from transformers import AutoConfig
        from transformers.utils import logging as transformers_logging

        path, self.encoder_id = resolve_encoder(encoder)
        self.encoder, self.layer, self.device, self.batch_size = encoder, layer, device, batch_size
        try:
            config = AutoConfig.from_pretrained(path)
        except OSError as e:
            raise ModelSpecError(f"cannot load encoder {encoder!r}: {e}") from None
        n_layers = getattr(config, "num_hidden_layers", None)
        if not isinstance(layer, int) or layer < 0 or (n_layers is not None and layer > n_layers):
            raise AlignheadsError(f"layer {layer} out of range: encoder {encoder!r} has hidden states 0..{n_layers} "
                                  "(0 = embeddings, i = output of layer i)")
        bert_like = config.model_type in _BERT_LIKE
        self._cut = bert_like and layer >= 1
        kw = {"add_pooling_layer": False} if bert_like else {}  # the pooler is never used (e5's copy has none)
        if self._cut:
            kw["num_hidden_layers"] = layer  # later layers are never used: skip them
        verbosity = transformers_logging.get_verbosity()
        if self._cut:  # the load report would list the skipped layers' weights as unexpected: that is intended
            transformers_logging.set_verbosity_error()
        try:
            self.model, self.tokenizer, _ = load_encoder(path, device=device, **kw)
        finally:
            transformers_logging.set_verbosity(verbosity)
        self.max_tokens = min(getattr(self.tokenizer, "model_max_length", 512) or 512,
                              getattr(self.model.config, "max_position_embeddings", 512) or 512)

    def embed(self, sentences: Sequence[Words], what: Sequence[str] | None = None
              ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per sentence: subword vectors [n_tokens, H] at `layer` and each subword's word index (no specials)."""
        import torch

        enc = [self.tokenizer(list(s), is_split_into_words=True, add_special_tokens=True) for s in sentences]
        for k, e in enumerate(enc):
            if len(e["input_ids"]) > self.max_tokens:
                name = what[k] if what else f"sentence {k}"
                raise AlignheadsError(f"{name}: {len(e['input_ids'])} tokens, the encoder takes at most "
                                      f"{self.max_tokens}; split the sentence")
        out: list = [None] * len(enc)
        order = sorted(range(len(enc)), key=lambda k: len(enc[k]["input_ids"]))  # similar lengths pad less
        pad = self.tokenizer.pad_token_id or 0
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            width = max(len(enc[k]["input_ids"]) for k in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, k in enumerate(idx):
                n = len(enc[k]["input_ids"])
                ids[r, :n] = torch.tensor(enc[k]["input_ids"])
                mask[r, :n] = 1
            with torch.no_grad():
                res = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                 output_hidden_states=not self._cut)
            hidden = (res.last_hidden_state if self._cut else res.hidden_states[self.layer]).float().cpu().numpy()
            for r, k in enumerate(idx):
                word_ids = enc[k].word_ids()
                keep = [t for t, w in enumerate(word_ids) if w is not None]
                out[k] = (hidden[r, keep], np.array([word_ids[t] for t in keep], dtype=np.int64))
        return out

    @staticmethod
    def match(src: tuple[np.ndarray, np.ndarray], tgt: tuple[np.ndarray, np.ndarray], method: str) -> frozenset:
        """SimAlign's subword matching (`SentenceAligner`'s own static methods), mapped to word links."""
        sa = _simalign()
        (xs, ws), (xt, wt) = src, tgt
        if len(xs) == 0 or len(xt) == 0:
            return frozenset()
        sim = sa.get_similarity(xs, xt)
        if method == "inter":
            fwd, rev = sa.get_alignment_matrix(sim)
            mat = fwd * rev
        elif method == "itermax":
            mat = sa.iter_max(sim)
        else:
            mat = sa.get_max_weight_match(sim)
        i, j = np.nonzero(mat > 0)
        return frozenset(zip(ws[i].tolist(), wt[j].tolist(), strict=True))

    def align(self, pairs: Sequence[tuple[Words, Words]], method: str = "itermax", *,
              ids: Sequence[str] | None = None, progress: bool = True) -> list[frozenset]:
        """Word links of every pair (0-indexed (src, tgt)); batches the encoder over all sentences."""
        _check_method(method)
        ids = list(ids) if ids is not None else [str(k + 1) for k in range(len(pairs))]
        chunk = max(self.batch_size * 4, 1)
        links: list[frozenset] = []
        bar = tqdm(total=len(pairs), desc=f"simalign {method}", unit="pair", disable=not progress)
        for c in range(0, len(pairs), chunk):
            part = pairs[c : c + chunk]
            sents = [s for p in part for s in p]
            what = [f"pair {ids[c + k // 2]} {'source' if k % 2 == 0 else 'target'}" for k in range(len(sents))]
            vecs = self.embed(sents, what)
            for k in range(len(part)):
                links.append(self.match(vecs[2 * k], vecs[2 * k + 1], method))
            bar.update(len(part))
        bar.close()
        return links


# ---------------------------------------------------------------- corpus in, corpus out


def _as_words(sentence: str | Sequence[str], where: str) -> Words:
    words = tuple(sentence.split()) if isinstance(sentence, str) else tuple(sentence)
    if not words:
        raise AlignheadsError(f"{where}: empty sentence (no words)")
    for w in words:
        if not isinstance(w, str) or not w or any(ch.isspace() for ch in w):
            raise AlignheadsError(f"{where}: word {w!r} is empty, not a string or contains whitespace")
    return words


def silver_meta(aligner: SilverAligner, method: str) -> dict:
    """The provenance record written to `corpus.meta["silver"]`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        sv = version("simalign")
    except PackageNotFoundError:  # pragma: no cover
        sv = None
    return {"aligner": "simalign", "aligner_version": sv, "encoder": aligner.encoder_id, "method": method,
            "layer": aligner.layer, "level": "subword"}


def align_corpus(src_sentences: Sequence[str | Sequence[str]], tgt_sentences: Sequence[str | Sequence[str]],
                 src_lang: str, tgt_lang: str, *, encoder: str = EMBEDDED_ENCODER, method: str = "itermax",
                 layer: int = 8, ids: Sequence[str] | None = None, name: str = "",
                 sources: Sequence[str] = (), aligner: SilverAligner | None = None,
                 progress: bool = True) -> Corpus:
    """Word-align pre-tokenised sentence pairs with SimAlign; the links become the pairs' (silver) sure links.

    Sentences are word lists (or strings split on whitespace). Pass `aligner` to reuse a loaded
    encoder (its encoder and layer then apply).
    """
    _check_method(method)
    get_language(src_lang), get_language(tgt_lang)
    if len(src_sentences) != len(tgt_sentences):
        raise AlignheadsError(f"{len(src_sentences)} source but {len(tgt_sentences)} target sentences")
    ids = [str(i) for i in ids] if ids is not None else [str(k + 1) for k in range(len(src_sentences))]
    if len(ids) != len(src_sentences) or len(set(ids)) != len(ids):
        raise AlignheadsError("ids must be unique, one per sentence pair")
    pairs = [(_as_words(s, f"pair {i} source"), _as_words(t, f"pair {i} target"))
             for i, s, t in zip(ids, src_sentences, tgt_sentences, strict=True)]
    aligner = aligner or SilverAligner(encoder, layer=layer)
    links = aligner.align(pairs, method, ids=ids, progress=progress)
    out = [SentencePair(i, s, t, lk, lk) for i, (s, t), lk in zip(ids, pairs, links, strict=True)]
    return Corpus(out, src_lang, tgt_lang, name or "silver", tuple(sources), {"silver": silver_meta(aligner, method)})


def realign(corpus: Corpus, **kw) -> Corpus:
    """`align_corpus` over the words of an existing corpus (its links ignored; ids, name and files kept)."""
    return align_corpus([p.src_words for p in corpus], [p.tgt_words for p in corpus], corpus.src_lang,
                        corpus.tgt_lang, ids=[p.id for p in corpus], name=corpus.name, sources=corpus.sources, **kw)


# ---------------------------------------------------------------- plain parallel text


@dataclass
class ParallelText:
    """Word-tokenised sentence pairs without alignments, and where they came from."""

    src: list[Words]
    tgt: list[Words]
    ids: list[str]
    sources: tuple[str, ...]
    src_lang: str | None = None
    tgt_lang: str | None = None
    ignored_links: bool = False  # read from a word-aligned corpus whose links were left out
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.src)

    def swap(self) -> ParallelText:
        """The same sentences with source and target exchanged."""
        return replace(self, src=self.tgt, tgt=self.src, src_lang=self.tgt_lang, tgt_lang=self.src_lang)

    def head(self, n: int) -> ParallelText:
        """The first n pairs."""
        return replace(self, src=self.src[:n], tgt=self.tgt[:n], ids=self.ids[:n])


def _split_words(text: str, path: Path, line: int, side: str) -> Words:
    words = tuple(text.split())
    if not words:
        raise DataFormatError(path, line, f"empty {side} sentence")
    return words


def _check_segmented(sents: list[Words], lang: str | None, path: Path) -> None:
    """Unspaced scripts (zh, ja) must come word-segmented: a whole side of single 'words' is unsegmented text."""
    if lang and not get_language(lang).spaced and sents and all(len(s) == 1 for s in sents):
        longest = max(range(len(sents)), key=lambda k: len(sents[k][0]))
        if len(sents[longest][0]) > 3:
            raise DataFormatError(path, None, f"the {get_language(lang).name} side is not word-segmented (no "
                                              "spaces on any line); separate its words by spaces first")


def read_parallel(path: str | Path | tuple[str | Path, str | Path], src_lang: str | None = None,
                  tgt_lang: str | None = None) -> ParallelText:
    """Read plain parallel text: one pair per line (`src \\t tgt` or `src ||| tgt`) or two line-aligned files.

    Words are whitespace-separated (tokenise punctuation beforehand if it should be separate).
    An alignheads or XL-WA corpus file is accepted too: its words are read and its links ignored.
    Mismatched line counts, empty lines or sides and mixed separators raise DataFormatError.
    """
    if isinstance(path, tuple | list):
        if len(path) != 2:
            raise AlignheadsError(f"parallel text is one file or (source file, target file), got {len(path)} paths")
        sp, tp = Path(path[0]), Path(path[1])
        s_lines, t_lines = _read_lines(sp), _read_lines(tp)
        if len(s_lines) != len(t_lines):
            raise DataFormatError(tp, None, f"{len(t_lines)} lines, but the source file {sp} has {len(s_lines)}")
        if not s_lines:
            raise DataFormatError(sp, None, "no sentences")
        src = [_split_words(ln, sp, n, "source") for n, ln in enumerate(s_lines, 1)]
        tgt = [_split_words(ln, tp, n, "target") for n, ln in enumerate(t_lines, 1)]
        _check_segmented(src, src_lang, sp)
        _check_segmented(tgt, tgt_lang, tp)
        return ParallelText(src, tgt, [str(n) for n in range(1, len(src) + 1)], (str(sp), str(tp)), src_lang, tgt_lang)
    path = Path(path)
    lines = _read_lines(path)
    if not lines:
        raise DataFormatError(path, None, "no sentences")
    if lines[0].startswith("# alignheads-corpus") or lines[0].count("\t") == 2:
        corpus = read_corpus(path, "alignheads" if lines[0].startswith("#") else "xlwa",
                             src_lang=src_lang, tgt_lang=tgt_lang)
        return ParallelText([p.src_words for p in corpus], [p.tgt_words for p in corpus], [p.id for p in corpus],
                            corpus.sources, corpus.src_lang, corpus.tgt_lang, ignored_links=True,
                            meta={k: v for k, v in corpus.meta.items() if k == "license"})
    sep = "\t" if "\t" in lines[0] else "|||" if "|||" in lines[0] else None
    if sep is None:
        raise DataFormatError(path, 1, "expected 'source<TAB>target' or 'source ||| target' (or pass two files)")
    other = "|||" if sep == "\t" else "\t"
    src, tgt = [], []
    for n, ln in enumerate(lines, 1):
        if not ln.strip():
            raise DataFormatError(path, n, "empty line: every line must hold one sentence pair")
        parts = ln.split(sep)
        if len(parts) != 2:
            what = "tab" if sep == "\t" else "'|||'"
            hint = f" (the file uses {what!s} as separator; this line has '{other.strip()}')" if other in ln else ""
            raise DataFormatError(path, n, f"expected exactly one {what} separating source and target, "
                                           f"found {len(parts) - 1}{hint}")
        src.append(_split_words(parts[0], path, n, "source"))
        tgt.append(_split_words(parts[1], path, n, "target"))
    _check_segmented(src, src_lang, path)
    _check_segmented(tgt, tgt_lang, path)
    return ParallelText(src, tgt, [str(n) for n in range(1, len(src) + 1)], (str(path),), src_lang, tgt_lang)


def align_parallel(text: ParallelText, src_lang: str | None = None, tgt_lang: str | None = None, **kw) -> Corpus:
    """`align_corpus` over what `read_parallel` returned (what `alignheads align` runs)."""
    src_lang, tgt_lang = src_lang or text.src_lang, tgt_lang or text.tgt_lang
    if not src_lang or not tgt_lang:
        raise AlignheadsError("source and target languages are needed (--src/--tgt)")
    name = kw.pop("name", "") or Path(text.sources[0]).stem
    corpus = align_corpus(text.src, text.tgt, src_lang, tgt_lang, ids=text.ids, name=name, sources=text.sources, **kw)
    corpus.meta.update(text.meta)
    return corpus


# ---------------------------------------------------------------- evaluation against gold


def aligner_metrics(corpus_pred: Corpus, corpus_gold: Corpus) -> dict:
    """AER, precision, recall (fractions, corpus-level) of predicted sure links against gold sure/possible links.

    Pairs are matched by position and must have the same words. Uses `metrics.alignment_counts`, so the
    numbers are comparable with the head scores.
    """
    if len(corpus_pred) != len(corpus_gold):
        raise AlignheadsError(f"prediction has {len(corpus_pred)} pairs, gold {len(corpus_gold)}")
    counts = np.zeros(4)
    for p, g in zip(corpus_pred, corpus_gold, strict=True):
        if p.src_words != g.src_words or p.tgt_words != g.tgt_words:
            raise AlignheadsError(f"pair {p.id} (prediction) and {g.id} (gold) have different words")
        counts += alignment_counts(p.sure, g)
    return {**aer_metrics(counts), "n_pairs": len(corpus_gold), "n_links": int(counts[2]),
            "n_gold_sure": int(counts[3])}


def compare_aligner(gold: Corpus, *, encoder: str = EMBEDDED_ENCODER, method: str = "itermax", layer: int = 8,
                    aligner: SilverAligner | None = None, progress: bool = True) -> dict:
    """SimAlign's metrics on the pairs of `gold` (what heads-eval reports beside the heads and the diagonal)."""
    pred = realign(gold, encoder=encoder, method=method, layer=layer, aligner=aligner, progress=progress)
    return {**aligner_metrics(pred, gold), **pred.meta["silver"]}
