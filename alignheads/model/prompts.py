"""Prompt layouts: the exact text the translator shows the LLM, with word <-> token maps.

A layout renders a source prefix (the explicit source span), the accepted target prefix
(assistant prefill, continued, never closed) and optionally a teacher-forced target. Head
scoring and the run-time translator call the same `render`, so heads are calibrated on
precisely the prompt they are used with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from ..base.errors import AlignheadsError
from ..base.languages import get_language
from ..base.text import Surface, surface

DEFAULT_SYSTEM = (
    "You are a professional simultaneous interpreter. Translate the {src} ASR prefix into {tgt}. "
    "The prefix may stop in the middle of a sentence: continue the {tgt} translation written so far, "
    "translate only what the {src} text already says, and output only the translation."
)
DEFAULT_USER_HEADER = "[Current {src} ASR prefix]\n"

# Few-shot pairs for completion layouts (base models). Written for this project.
FEW_SHOT: dict[str, list[tuple[str, str]]] = {
    "de": [
        ("Thank you very much for the invitation.", "Vielen Dank für die Einladung."),
        ("Our results show a clear improvement.", "Unsere Ergebnisse zeigen eine deutliche Verbesserung."),
        ("The model was trained on public data.", "Das Modell wurde mit öffentlichen Daten trainiert."),
    ],
    "it": [
        ("Thank you very much for the invitation.", "Grazie mille per l'invito."),
        ("Our results show a clear improvement.", "I nostri risultati mostrano un chiaro miglioramento."),
        ("The model was trained on public data.", "Il modello è stato addestrato su dati pubblici."),
    ],
    "zh": [
        ("Thank you very much for the invitation.", "非常感谢您的邀请。"),
        ("Our results show a clear improvement.", "我们的结果显示出明显的改进。"),
        ("The model was trained on public data.", "该模型是在公开数据上训练的。"),
    ],
}


@dataclass(frozen=True)
class PromptLayout:
    """How a translation prompt is laid out: `chat` (chat template, the paper's) or `completion` (few-shot)."""

    src_lang: str
    tgt_lang: str
    family: Literal["chat", "completion"] = "chat"
    system: str = DEFAULT_SYSTEM
    user_header: str = DEFAULT_USER_HEADER
    examples: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self):
        if self.family not in ("chat", "completion"):
            raise AlignheadsError(f"prompt layout family must be 'chat' or 'completion', not {self.family!r}")
        object.__setattr__(self, "src_lang", get_language(self.src_lang).code)
        object.__setattr__(self, "tgt_lang", get_language(self.tgt_lang).code)
        if self.family == "completion" and not self.examples and self.src_lang == "en" and self.tgt_lang in FEW_SHOT:
            # Other directions run zero-shot ("Romanian:" after the source line) unless examples= are passed.
            object.__setattr__(self, "examples", tuple(FEW_SHOT[self.tgt_lang]))

    @property
    def id(self) -> str:
        """Stable identifier: family plus a short hash of everything that shapes the text."""
        return f"{self.family}-{self.hash[:12]}"

    @property
    def hash(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict:
        return {**asdict(self), "id": self.id}

    @classmethod
    def from_dict(cls, d: dict) -> PromptLayout:
        d = {k: v for k, v in d.items() if k != "id"}
        d["examples"] = tuple(tuple(e) for e in d.get("examples", ()))
        return cls(**d)

    @classmethod
    def for_tokenizer(cls, tokenizer, src_lang: str, tgt_lang: str) -> PromptLayout:
        """The default layout for a tokenizer: chat when it has a chat template, completion otherwise."""
        family = "chat" if getattr(tokenizer, "chat_template", None) else "completion"
        return cls(src_lang, tgt_lang, family=family)

    def _names(self) -> dict[str, str]:
        return {"src": get_language(self.src_lang).name, "tgt": get_language(self.tgt_lang).name}

    def head_text(self, tokenizer, source_text: str) -> tuple[str, int]:
        """Prompt text up to the start of the target, and the char offset where `source_text` begins."""
        names = self._names()
        if self.family == "chat":
            marker = "\x00SOURCE\x00"
            messages = [
                {"role": "system", "content": self.system.format(**names)},
                {"role": "user", "content": self.user_header.format(**names) + marker},
            ]
            try:
                text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except ValueError as e:
                raise AlignheadsError(f"the chat layout needs a tokenizer with a chat template ({e})") from e
            if text.count(marker) != 1:
                raise AlignheadsError("the chat template altered the source text; cannot locate the source span")
            start = text.index(marker)
            return text.replace(marker, source_text), start
        bos = tokenizer.bos_token or ""
        shots = "".join(f"{names['src']}: {s}\n{names['tgt']}: {t}\n\n" for s, t in self.examples)
        text = f"{bos}{shots}{names['src']}: "
        start = len(text)
        return f"{text}{source_text}\n{names['tgt']}:", start


@dataclass
class RenderedPrompt:
    """A rendered prompt: token ids, and the token positions of every source and target word."""

    input_ids: list[int]
    text: str
    src_words: tuple[str, ...]
    src_tokens: list[list[int]]  # per source word, its token positions (a token may serve two words)
    tgt_words: tuple[str, ...]
    tgt_tokens: list[list[int]]  # per target word (prefix words first, then teacher-forced words)
    src_token_span: tuple[int, int]  # [first, last+1) token positions covering the source text
    target_start: int  # position of the first target token (prefix or teacher-forced)
    prefix_end: int  # position after the accepted prefix == first teacher-forced / generated token
    offsets: list[tuple[int, int]] = field(default_factory=list)  # the tokenizer's char span of every token
    src_chars: list[tuple[int, int]] = field(default_factory=list)  # char span of every source word in `text`
    tgt_chars: list[tuple[int, int]] = field(default_factory=list)  # ... of every target word (prefix words first)

    def __len__(self) -> int:
        return len(self.input_ids)

    def token_source_word(self) -> dict[int, list[int]]:
        """Inverse map: token position -> source word indices."""
        inv: dict[int, list[int]] = {}
        for w, toks in enumerate(self.src_tokens):
            for t in toks:
                inv.setdefault(t, []).append(w)
        return inv


def _char_to_tokens(
    offsets: Sequence[tuple[int, int]], text: str, spans: Sequence[tuple[int, int]], base: int
) -> list[list[int]]:
    """For each char span (relative to `base`, in increasing order), the tokens whose non-space characters overlap
    it — one pass over spans and tokens together (linear in the prompt), since both advance along the text."""
    trimmed = []
    for ts, te in offsets:  # trim the whitespace a token carries ("▁word", " word") before testing overlap
        while ts < te and text[ts].isspace():
            ts += 1
        trimmed.append((ts, te))
    out: list[list[int]] = []
    first = 0  # tokens before `first` end before every later span starts
    for s, e in spans:
        s, e = s + base, e + base
        while first < len(trimmed) and trimmed[first][1] <= s:
            first += 1
        toks = []
        t = first
        while t < len(trimmed) and trimmed[t][0] < e:
            ts, te = trimmed[t]
            if ts < te and te > s:
                toks.append(t)
            t += 1
        if not toks:
            raise AlignheadsError(f"no token covers the word {text[s:e]!r} at chars {s}-{e}")
        out.append(toks)
    return out


def render(
    layout: PromptLayout,
    tokenizer,
    src_words: Sequence[str],
    prefix: str = "",
    target_words: Sequence[str] | None = None,
) -> RenderedPrompt:
    """Render the prompt for a source prefix, an accepted target prefix and an optional teacher-forced target.

    `prefix` is the accepted translation exactly as emitted; `target_words` continue it (joined
    with the target language's spacing rules). Both sides' words are mapped to token positions
    through the tokenizer's offset mapping on the whole prompt.
    """
    src: Surface = surface(list(src_words), layout.src_lang)
    head, src_start = layout.head_text(tokenizer, src.text)
    tgt_lang = get_language(layout.tgt_lang)
    prefix_words = tuple(prefix.split()) if tgt_lang.spaced else tuple(c for c in prefix if not c.isspace())
    continuation = surface(list(target_words), layout.tgt_lang) if target_words else Surface("", ())
    joiner = " " if prefix and continuation.text and tgt_lang.spaced and not prefix[-1].isspace() else ""
    if layout.family == "completion" and (prefix or continuation.text):
        joiner_head = " "  # "German: Das ..." — the target follows the colon after one space
    else:
        joiner_head = ""
    target_text = joiner_head + prefix + joiner + continuation.text
    full = head + target_text
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    src_tokens = _char_to_tokens(offsets, full, src.spans, src_start)

    prefix_base = len(head) + len(joiner_head)
    prefix_spans, pos = [], 0
    for w in prefix_words:
        pos = prefix.index(w, pos)
        prefix_spans.append((pos, pos + len(w)))
        pos += len(w)
    tf_base = prefix_base + len(prefix) + len(joiner)
    tgt_tokens = _char_to_tokens(offsets, full, prefix_spans, prefix_base) + _char_to_tokens(
        offsets, full, continuation.spans, tf_base
    )
    tgt_chars = [(s + prefix_base, e + prefix_base) for s, e in prefix_spans] + [
        (s + tf_base, e + tf_base) for s, e in continuation.spans]

    def first_token_at(char: int) -> int:
        return next((t for t, (ts, te) in enumerate(offsets) if te > char), len(ids))

    target_start = first_token_at(len(head))
    src_span = (min(src_tokens[0]), max(src_tokens[-1]) + 1) if src_tokens else (target_start, target_start)
    prefix_end = first_token_at(tf_base) if continuation.text else len(ids)
    return RenderedPrompt(
        input_ids=list(ids),
        text=full,
        src_words=tuple(src_words),
        src_tokens=src_tokens,
        tgt_words=prefix_words + tuple(target_words or ()),
        tgt_tokens=tgt_tokens,
        src_token_span=src_span,
        target_start=target_start,
        prefix_end=prefix_end,
        offsets=[tuple(o) for o in offsets],
        src_chars=[(s + src_start, e + src_start) for s, e in src.spans],
        tgt_chars=tgt_chars,
    )
