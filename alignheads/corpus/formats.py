"""Corpus file formats: read (format detected or given), write, and read-and-validate a file.

Formats read: "alignheads" (the project's own TSV, also written), "xlwa" (XL-WA TSV), "talp"
(awesome-align `src ||| tgt` + 1-indexed gold), "pharaoh" (source, target and 0-indexed
alignment files) and "a4l" (AlignAtt4LLM's `word_alignments_<src>-<tgt>.json`: sparse anchor
links between word spans). Links are (source index, target index), 0-indexed, everywhere inside.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..base.errors import AlignheadsError, DataFormatError
from ..base.fileio import atomic_open
from ..base.languages import get_language, parse_direction
from .pairs import Corpus, Link, SentencePair
from .validation import ValidationReport, validate_corpus

FORMATS = ("alignheads", "xlwa", "talp", "pharaoh", "a4l")
HEADER = "# alignheads-corpus v1 "

_LINK = re.compile(r"([0-9]+)([-p])([0-9]+)")
_UNALIGNED = re.compile(r"([st])([0-9]+)")


def _read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 file (BOM and CRLF tolerated); undecodable bytes raise with their line."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataFormatError(path, None, f"cannot read file ({e.strerror or e})") from None
    data = data.removeprefix(b"\xef\xbb\xbf")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        problem = f"not valid UTF-8 (byte 0x{data[e.start]:02x}); files must be UTF-8"
        raise DataFormatError(path, line, problem) from None
    lines = text.split("\n")  # not splitlines(): words may contain U+2028, U+001C, ...
    if lines[-1] == "":
        lines.pop()
    return [ln.removesuffix("\r") for ln in lines]


def _words(text: str, path: Path, line: int, side: str, strict: bool) -> tuple[str, ...]:
    words = tuple(text.split(" ") if strict else text.split())
    if not words or (words == ("",)):
        raise DataFormatError(path, line, f"empty pair: no {side} words")
    if strict and "" in words:
        raise DataFormatError(path, line, f"empty {side} word (leading, trailing or double space)")
    return words


def _links(text: str, n_src: int, n_tgt: int, path: Path, line: int, base: int = 0) -> tuple[set, set]:
    """Parse `i-j` (sure) and `ipj` (possible-only) tokens, checking each index against the word counts."""
    sure: set[Link] = set()
    maybe: set[Link] = set()
    note = f"; indices are {base}-based in this file"
    for tok in text.split():
        m = _LINK.fullmatch(tok)
        if not m:
            raise DataFormatError(path, line, f"malformed link {tok!r}: expected i-j (sure) or ipj (possible)")
        i, j = int(m[1]) - base, int(m[3]) - base
        for side, idx, n, raw in (("source", i, n_src, m[1]), ("target", j, n_tgt, m[3])):
            if not 0 <= idx < n:
                raise DataFormatError(path, line, f"link {tok!r}: {side} index {raw} out of range "
                                                  f"({side} has {n} words{note})")
        into, other = (sure, maybe) if m[2] == "-" else (maybe, sure)
        if (i, j) in other:
            raise DataFormatError(path, line, f"link {tok!r} is listed both as sure (i-j) and possible (ipj)")
        if (i, j) in into:
            raise DataFormatError(path, line, f"link {tok!r} is listed twice")
        into.add((i, j))
    return sure, maybe


def _unaligned(text: str, pair: SentencePair, path: Path, line: int) -> tuple[frozenset, frozenset]:
    out: dict[str, set[int]] = {"s": set(), "t": set()}
    for tok in text.split():
        m = _UNALIGNED.fullmatch(tok)
        if not m:
            raise DataFormatError(path, line, f"malformed unaligned mark {tok!r}: expected s<i> or t<j>")
        side, idx = m[1], int(m[2])
        n, name = (len(pair.src_words), "source") if side == "s" else (len(pair.tgt_words), "target")
        if idx >= n:
            raise DataFormatError(path, line, f"unaligned mark {tok!r}: {name} index out of range "
                                              f"({name} has {n} words)")
        if idx in out[side]:
            raise DataFormatError(path, line, f"unaligned mark {tok!r} is listed twice")
        if any((i if side == "s" else j) == idx for i, j in pair.possible):
            raise DataFormatError(path, line, f"{name} word {idx} is marked unaligned ({tok}) but has a link")
        out[side].add(idx)
    return frozenset(out["s"]), frozenset(out["t"])


def _langs(path: Path, src_lang: str | None, tgt_lang: str | None, *others: Path) -> tuple[str, str]:
    """Languages from the arguments, else from a name like `en-it.*` (or text files ending .en/.it)."""
    src_lang = src_lang and get_language(src_lang).code
    tgt_lang = tgt_lang and get_language(tgt_lang).code
    if src_lang and tgt_lang:
        return src_lang, tgt_lang
    guesses = []
    m = re.match(r"([A-Za-z]{2,3})[-_]([A-Za-z]{2,3})(?:[._]|$)", path.name)
    if m:
        guesses.append((m[1], m[2]))
    if others:
        guesses.append((path.suffix[1:], others[0].suffix[1:]))
    for s, t in guesses:
        try:
            return get_language(src_lang or s).code, get_language(tgt_lang or t).code
        except AlignheadsError:
            continue
    raise DataFormatError(path, None, "cannot tell the languages from the file name (expected a name like "
                                      "'en-it.*'); pass src_lang/tgt_lang (--src/--tgt)")


def _pair_files(paths: Sequence[Path]) -> list[list[str]]:
    """Read parallel files, checking they have the same number of lines."""
    texts = [_read_lines(p) for p in paths]
    n = len(texts[0])
    for p, lines in zip(paths[1:], texts[1:], strict=True):
        if len(lines) != n:
            longer = p if len(lines) > n else paths[0]
            raise DataFormatError(longer, min(n, len(lines)) + 1, f"line-count mismatch: {paths[0]} has {n} lines, "
                                                                  f"{p} has {len(lines)}")
    if n == 0:
        raise DataFormatError(paths[0], None, "file is empty: no sentence pairs")
    return texts


def _read_alignheads(path: Path, src_lang, tgt_lang) -> Corpus:
    lines = _read_lines(path)
    if not lines or not lines[0].startswith("# alignheads-corpus "):
        raise DataFormatError(path, 1, f"missing header line '{HEADER}{{...}}'")
    if not lines[0].startswith(HEADER):
        raise DataFormatError(path, 1, f"unsupported header {lines[0][:40]!r}: this version reads v1")
    try:
        head = json.loads(lines[0][len(HEADER):])
        if not isinstance(head, dict) or not isinstance(head.get("src"), str) or not isinstance(head.get("tgt"), str):
            raise TypeError('expected a JSON object with "src" and "tgt" language codes')
        if not isinstance(head.get("meta", {}), dict) or not isinstance(head.get("name", ""), str):
            raise TypeError('"meta" must be a JSON object and "name" a string')
        if not isinstance(head.get("sparse", False), bool):
            raise TypeError('"sparse" must be true or false')
        src, tgt = get_language(head["src"]).code, get_language(head["tgt"]).code
    except (ValueError, TypeError, AlignheadsError) as e:
        raise DataFormatError(path, 1, f"bad header JSON: {e}") from None
    for given, found in ((src_lang, src), (tgt_lang, tgt)):
        if given and get_language(given).code != found:
            raise DataFormatError(path, 1, f"language {given!r} was asked for but the file says {found!r}")
    pairs, first_seen = [], {}
    for n, ln in enumerate(lines[1:], start=2):
        if ln.startswith("#"):
            continue
        fields = ln.split("\t")
        if len(fields) != 5:
            raise DataFormatError(path, n, f"expected 5 tab-separated fields (id, source words, target words, "
                                           f"links, unaligned), found {len(fields)}")
        pid, src_text, tgt_text, link_text, unal_text = fields
        if not pid:
            raise DataFormatError(path, n, "empty id")
        if pid in first_seen:
            raise DataFormatError(path, n, f"duplicate id {pid!r} (first on line {first_seen[pid]})")
        first_seen[pid] = n
        sw = _words(src_text, path, n, "source", strict=True)
        tw = _words(tgt_text, path, n, "target", strict=True)
        sure, maybe = _links(link_text, len(sw), len(tw), path, n)
        pair = SentencePair(pid, sw, tw, frozenset(sure), frozenset(maybe), sparse=head.get("sparse", False))
        su, tu = _unaligned(unal_text, pair, path, n)
        pairs.append(replace(pair, src_unaligned=su, tgt_unaligned=tu))
    meta = dict(head.get("meta", {}))
    if head.get("license") is not None:
        meta["license"] = head["license"]
    return Corpus(pairs, src, tgt, head.get("name", path.stem), (str(path),), meta)


def _read_xlwa(path: Path, src_lang, tgt_lang) -> Corpus:
    lines = _pair_files([path])[0]
    src, tgt = _langs(path, src_lang, tgt_lang)
    pairs = []
    for n, ln in enumerate(lines, start=1):
        fields = ln.split("\t")
        if len(fields) != 3:
            raise DataFormatError(path, n, f"expected 3 tab-separated fields (source, target, links), "
                                           f"found {len(fields)}")
        sw, tw = _words(fields[0], path, n, "source", False), _words(fields[1], path, n, "target", False)
        sure, maybe = _links(fields[2], len(sw), len(tw), path, n)
        pairs.append(SentencePair(str(n), sw, tw, frozenset(sure), frozenset(maybe)))
    return Corpus(pairs, src, tgt, path.stem, (str(path),))


def _read_talp(path: Path, gold: Path | None, src_lang, tgt_lang) -> Corpus:
    gold = gold or path.with_suffix(".gold")
    if not gold.is_file():
        raise DataFormatError(path, None, f"gold alignment file {gold} not found; pass gold= (--gold)")
    texts, golds = _pair_files([path, gold])
    src, tgt = _langs(path, src_lang, tgt_lang)
    pairs = []
    for n, (ln, gl) in enumerate(zip(texts, golds, strict=True), start=1):
        sides = ln.split("|||")
        if len(sides) != 2:
            raise DataFormatError(path, n, "expected 'source words ||| target words'")
        sw, tw = _words(sides[0], path, n, "source", False), _words(sides[1], path, n, "target", False)
        sure, maybe = _links(gl, len(sw), len(tw), gold, n, base=1)
        pairs.append(SentencePair(str(n), sw, tw, frozenset(sure), frozenset(maybe)))
    return Corpus(pairs, src, tgt, path.stem, (str(path), str(gold)))


def _read_pharaoh(path: Path, tgt: Path | None, gold: Path | None, src_lang, tgt_lang) -> Corpus:
    if tgt is None or gold is None:
        raise DataFormatError(path, None, "pharaoh format needs the target text (tgt=) and alignments (gold=)")
    srcs, tgts, golds = _pair_files([path, tgt, gold])
    src, tgt_code = _langs(path, src_lang, tgt_lang, tgt)
    pairs = []
    for n, (s, t, g) in enumerate(zip(srcs, tgts, golds, strict=True), start=1):
        sw, tw = _words(s, path, n, "source", False), _words(t, tgt, n, "target", False)
        sure, maybe = _links(g, len(sw), len(tw), gold, n)
        pairs.append(SentencePair(str(n), sw, tw, frozenset(sure), frozenset(maybe)))
    return Corpus(pairs, src, tgt_code, path.stem, (str(path), str(tgt), str(gold)))


def _json_rows(path: Path) -> list:
    """A JSON array of objects, or one JSON object per line (both as AlignAtt4LLM writes them)."""
    text = "\n".join(_read_lines(path)).strip()
    if not text:
        raise DataFormatError(path, None, "file is empty: no sentence pairs")
    try:
        if text[0] == "[":
            return json.loads(text)
        return [json.loads(ln) for ln in text.split("\n") if ln.strip()]
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"not valid JSON ({e.msg}, column {e.colno})") from None


def _a4l_words(row: dict, side: str, where: str, path: Path, notes: dict) -> tuple[tuple[str, ...], list[int]]:
    """Words of one side split at whitespace (their lists hold a few '% ' and '' entries); index[k] is where
    their word k starts in ours, index[-1] the word count, so spans map through it."""
    words = row.get(f"{side}_words")
    if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
        raise DataFormatError(path, None, f"{where}: field '{side}_words' must be a list of strings")
    kept, index = [], []
    for w in words:
        index.append(len(kept))
        parts = w.split()
        if parts != [w]:
            key = "empty words dropped" if not parts else "words stripped or split at whitespace"
            notes[key] = notes.get(key, 0) + 1
        kept.extend(parts)
    if not kept:
        raise DataFormatError(path, None, f"{where}: field '{side}_words' has no words")
    index.append(len(kept))
    return tuple(kept), index


def _a4l_span(link: dict, side: str, n: int, index: list[int], where: str, path: Path) -> range:
    span = link.get(f"{side}_span")
    if not (isinstance(span, list) and len(span) == 2 and all(type(v) is int for v in span)
            and 0 <= span[0] < span[1] <= n):
        raise DataFormatError(path, None, f"{where}.{side}_span: expected [start, end) word indices with "
                                          f"0 <= start < end <= {n} ({side} has {n} words), got {span!r}")
    out = range(index[span[0]], index[span[1]])
    if not out:
        raise DataFormatError(path, None, f"{where}.{side}_span {span} covers only empty words")
    return out


def _read_a4l(path: Path, src_lang, tgt_lang) -> Corpus:
    """AlignAtt4LLM's word-alignment set: spans over their word lists, sparse anchors (not exhaustive gold).

    A link between single words is sure, a link between longer spans makes all its word pairs possible."""
    rows = _json_rows(path)
    if not isinstance(rows, list):
        raise DataFormatError(path, None, "expected a JSON array of sentence pairs")
    if not rows:
        raise DataFormatError(path, None, "no sentence pairs")
    named = [r["direction"] for r in rows if isinstance(r, dict) and r.get("direction") is not None]
    if any(not isinstance(d, str) for d in named):
        bad = next(d for d in named if not isinstance(d, str))
        raise DataFormatError(path, None, f"field 'direction' must look like 'en-de', got {bad!r}")
    directions = set(named)
    if len(directions) > 1:
        raise DataFormatError(path, None, f"pairs disagree on 'direction': {sorted(directions)}")
    if directions:
        d = directions.pop()
        try:
            file_src, file_tgt = parse_direction(d)
        except AlignheadsError as e:
            raise DataFormatError(path, None, f"field 'direction' {d!r}: {e}") from None
        for given, found in ((src_lang, file_src), (tgt_lang, file_tgt)):
            if given and get_language(given).code != found:
                raise DataFormatError(path, None, f"language {given!r} was asked for but the file says {d!r}")
        src, tgt = file_src, file_tgt
    else:  # their file names end in _<src>-<tgt>.json
        m = re.search(r"_([A-Za-z]{2,3})-([A-Za-z]{2,3})\.jsonl?$", path.name)
        try:
            src, tgt = _langs(path, src_lang or (m and m[1]), tgt_lang or (m and m[2]))
        except AlignheadsError:
            src, tgt = _langs(path, src_lang, tgt_lang)
    pairs, seen, notes = [], {}, {}
    for n, row in enumerate(rows):
        where = f"pair {n}"
        if not isinstance(row, dict):
            raise DataFormatError(path, None, f"{where}: expected a JSON object, got {type(row).__name__}")
        pid = str(row.get("pair_id", n))
        where += f" (pair_id {pid})"
        if pid in seen:
            raise DataFormatError(path, None, f"{where}: duplicate pair_id (first at pair {seen[pid]})")
        seen[pid] = n
        sw, s_index = _a4l_words(row, "source", where, path, notes)
        tw, t_index = _a4l_words(row, "target", where, path, notes)
        links = row.get("alignments")
        if not isinstance(links, list):
            raise DataFormatError(path, None, f"{where}: field 'alignments' must be a list")
        sure, maybe = set(), set()
        for k, link in enumerate(links):
            at = f"{where}: alignments[{k}]"
            if not isinstance(link, dict):
                raise DataFormatError(path, None, f"{at}: expected a JSON object")
            ss = _a4l_span(link, "source", len(s_index) - 1, s_index, at, path)
            ts = _a4l_span(link, "target", len(t_index) - 1, t_index, at, path)
            conf = link.get("confidence", 1.0)
            if isinstance(conf, bool) or not isinstance(conf, int | float) or not 0.0 <= conf <= 1.0:
                raise DataFormatError(path, None, f"{at}.confidence: expected a number in [0, 1], got {conf!r}")
            (sure if len(ss) == len(ts) == 1 else maybe).update((i, j) for i in ss for j in ts)
        pairs.append(SentencePair(pid, sw, tw, frozenset(sure), frozenset(maybe - sure), sparse=True))
    meta = {"origin": "AlignAtt4LLM word_alignments (LLM-made anchors, filtered)",
            "anchor_links": sum(len(r["alignments"]) for r in rows)}
    if notes:
        meta["normalised"] = notes
    return Corpus(pairs, src, tgt, path.stem, (str(path),), meta)


def detect_format(path: str | Path, tgt: str | Path | None = None) -> str:
    """Guess a corpus file's format from its header, then its first line, then its extension."""
    path = Path(path)
    if tgt is not None:
        return "pharaoh"
    try:
        with path.open("rb") as f:
            first = f.readline().decode("utf-8", errors="replace")
    except OSError as e:
        raise DataFormatError(path, None, f"cannot read file ({e.strerror or e})") from None
    if first.lstrip("\ufeff").startswith("# alignheads-corpus"):
        return "alignheads"
    if first.lstrip("\ufeff \t\r\n")[:1] in ("[", "{"):
        return "a4l"
    if "|||" in first:
        return "talp"
    if first.count("\t") == 2:
        return "xlwa"
    by_suffix = {".src-tgt": "talp", ".tsv": "xlwa", ".json": "a4l", ".jsonl": "a4l"}
    if path.suffix in by_suffix:
        return by_suffix[path.suffix]
    raise DataFormatError(path, 1, f"cannot tell the format; pass format= (--format), one of {', '.join(FORMATS)}")


def read_corpus(path: str | Path, format: str | None = None, *, src_lang: str | None = None,
                tgt_lang: str | None = None, gold: str | Path | None = None, tgt: str | Path | None = None) -> Corpus:
    """Read a word-aligned corpus; `format` is detected when None. Bad input raises DataFormatError."""
    path = Path(path)
    fmt = (format or detect_format(path, tgt)).lower()
    gold_p, tgt_p = (Path(gold) if gold else None), (Path(tgt) if tgt else None)
    if fmt == "alignheads":
        return _read_alignheads(path, src_lang, tgt_lang)
    if fmt == "xlwa":
        return _read_xlwa(path, src_lang, tgt_lang)
    if fmt == "talp":
        return _read_talp(path, gold_p, src_lang, tgt_lang)
    if fmt == "pharaoh":
        return _read_pharaoh(path, tgt_p, gold_p, src_lang, tgt_lang)
    if fmt == "a4l":
        return _read_a4l(path, src_lang, tgt_lang)
    raise AlignheadsError(f"unknown corpus format {fmt!r}; known: {', '.join(FORMATS)}")


# ---------------------------------------------------------------- writing

def _link_text(p: SentencePair) -> str:
    return " ".join([f"{i}-{j}" for i, j in sorted(p.sure)] + [f"{i}p{j}" for i, j in sorted(p.possible - p.sure)])


def _check_writable(corpus: Corpus, path: Path) -> None:
    problems = validate_corpus(corpus).problems
    if problems:
        raise DataFormatError(path, None, f"refusing to write an invalid corpus: {problems[0]}")
    if len({p.sparse for p in corpus}) > 1:
        raise DataFormatError(path, None, "refusing to write a corpus that mixes sparse-anchor and exhaustive pairs")
    for p in corpus:
        if re.search(r"[\t\n\r]", p.id) or p.id.startswith("#"):
            raise DataFormatError(path, None, f"pair id {p.id!r} contains a tab/newline or starts with '#'")
        for w in p.src_words + p.tgt_words:
            if not w or re.search(r"[ \t\n\r]", w):
                raise DataFormatError(path, None, f"pair {p.id}: word {w!r} is empty or contains a space/tab/newline")


def write_corpus(corpus: Corpus, path: str | Path) -> None:
    """Write `corpus` in the alignheads format, atomically; read_corpus gives it back equal."""
    path = Path(path)
    _check_writable(corpus, path)
    meta = dict(corpus.meta)
    head = {"src": corpus.src_lang, "tgt": corpus.tgt_lang, "name": corpus.name}
    if any(p.sparse for p in corpus):
        head["sparse"] = True  # one flag for the file: _check_writable refused a mix
    if "license" in meta:
        head["license"] = meta.pop("license")
    head["meta"] = meta
    with atomic_open(path) as f:
        f.write(HEADER + json.dumps(head, ensure_ascii=False) + "\n")
        for p in corpus:
            unal = " ".join([f"s{i}" for i in sorted(p.src_unaligned)] + [f"t{j}" for j in sorted(p.tgt_unaligned)])
            f.write(f"{p.id}\t{' '.join(p.src_words)}\t{' '.join(p.tgt_words)}\t{_link_text(p)}\t{unal}\n")


def write_pharaoh(corpus: Corpus, src_path: str | Path, tgt_path: str | Path, align_path: str | Path) -> None:
    """Write source text, target text and 0-indexed `i-j`/`ipj` alignments (ids and unaligned marks are lost)."""
    _check_writable(corpus, Path(align_path))
    if any(p.sparse for p in corpus):
        raise DataFormatError(align_path, None, "pharaoh files cannot say that links are sparse anchors; "
                                                "write the alignheads format instead")
    for path, lines in ((src_path, [" ".join(p.src_words) for p in corpus]),
                        (tgt_path, [" ".join(p.tgt_words) for p in corpus]),
                        (align_path, [_link_text(p) for p in corpus])):
        with atomic_open(path) as f:
            f.writelines(ln + "\n" for ln in lines)


def validate_path(path: str | Path, format: str | None = None, *, strict: bool = False, src_lang: str | None = None,
                  tgt_lang: str | None = None, gold: str | Path | None = None,
                  tgt: str | Path | None = None) -> ValidationReport:
    """Read and validate a corpus file (what `alignheads validate` runs); malformed files raise DataFormatError."""
    corpus = read_corpus(path, format, src_lang=src_lang, tgt_lang=tgt_lang, gold=gold, tgt=tgt)
    return validate_corpus(corpus, strict=strict)
