"""Simultaneous-MT decision rules as pure functions: AlignAtt on draft attention, and the baselines.

AlignAtt (Papi et al. 2023; AlignAtt4LLM, DESIGN.md §2) on a draft of n tokens whose attention on
the S source words of the prompt is `attn[heads, n, S]`:

1. per head, z-score every source column over the draft tokens (mean/std over axis 1);
2. median-filter each row along the source axis (width 7, reflected edges, as whisper's timing code);
3. average over heads and take the argmax: ŝ_t, a 0-based source word index per draft token
   (steps 1–3 are `alignheads.heads.combine.combine_heads`, the one place heads are combined);
4. scan left to right and stop at the first token with ŝ_t ≥ N_accessible + b (the border rule) or
   ŝ_t < ŝ_{t-1} − R (the rewind rule: attention jumped back more than R words; R = 0 switches it off).

The border, exactly: words 0 … N_accessible−1 are accessible, so with the paper's b = 1 the rule
tolerates attention on the first not-yet-accessible word (index N_accessible) and fires from index
N_accessible + 1 on — it can only fire when the prompt shows at least two pending words. b = 0 stops
on any pending word. b = −f is the original AlignAtt rule (stop when attending one of the last f
accessible words: SimulStreaming's `content_len − ŝ ≤ f`), the form that makes the policy wait when
every word shown is accessible (text input without hold-back). Reading the same formula with a
1-based ŝ gives our b − 1.

The default border is b = −2, not the paper's 1 (`--preset paper`): on a prefix the heads attend the newest
words they can see, so at 0.4 s per word with the cascade's 0.25 s hold-back b = 1 can never stop a draft and
b = 0 emits almost as soon as it reads (BLEU 7.9 at LAAL 0.56 words, en-de); b = −2 stops 63–69 % of drafts
with or without the hold-back (README, "Quality against latency").

The accepted tokens are then cut back to the last complete unit (`unit_cut`): a whitespace word for
spaced languages (the draft's last word is incomplete unless the draft ended with a stop token),
one character for zh/ja.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..base.errors import AlignheadsError
from ..base.metrics import diagonal_words
from ..base.sentences import sentence_end
from ..heads.combine import combine_heads
from .config import AlignAttConfig

# Stop reasons (the keys alignheads.lab.viz.policy_trace knows are future_source, rewind, end_of_draft, sentence_end,
# final).
FUTURE_SOURCE = "future_source"
REWIND = "rewind"
END_OF_DRAFT = "end_of_draft"
SENTENCE_END = "sentence_end"  # the policy took all it could commit: the draft's sentence end is held back
FINAL = "final"
LEARNED_BORDER = "learned_border"  # the learned border held a drafted word back


def alignatt_positions(attn: np.ndarray, cfg: AlignAttConfig | None = None,
                       weights: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Aligned source word per draft token, and per head: (positions [n], head_positions [heads, n]).

    `attn` is [heads, draft tokens, source words] (attention of each draft token on each source word), combined
    by `combine_heads` with the config's z-score and median filter; `weights` (one per head, e.g. learned)
    replace the plain mean over heads.
    """
    cfg = cfg or AlignAttConfig()
    attn = np.asarray(attn, dtype=np.float64)
    if attn.ndim != 3:
        raise AlignheadsError(f"attention must be [heads, draft tokens, source words], got shape {attn.shape}")
    h, n, s = attn.shape
    if h == 0 or s == 0:
        raise AlignheadsError(f"attention needs at least one head and one source word, got shape {attn.shape}")
    if n == 0:
        return np.zeros(0, dtype=int), np.zeros((h, 0), dtype=int)
    mean, per_head = combine_heads(attn, weights, cfg.combination)
    return mean.argmax(axis=-1), per_head.argmax(axis=-1)


def alignatt_cut(
    positions: Sequence[int] | np.ndarray,
    n_accessible: int,
    cfg: AlignAttConfig | None = None,
    last_position: int | None = None,
) -> tuple[int, str, int | None]:
    """Apply the border and rewind rules: (tokens to keep, stop reason, index of the stopping token or None).

    `last_position` is the aligned word of the last token accepted before this draft (the rewind
    reference of the first draft token); None when nothing was accepted yet in this sentence.
    """
    cfg = cfg or AlignAttConfig()
    prev = last_position
    for t, pos in enumerate(int(p) for p in positions):
        if pos >= n_accessible + cfg.border:
            return t, FUTURE_SOURCE, t
        if cfg.rewind and prev is not None and pos < prev - cfg.rewind:
            return t, REWIND, t
        prev = pos
    return len(positions), END_OF_DRAFT, None


# ----------------------------------------------------------------------------- units

_UNIT = re.compile(r"\S+")


def unit_ends(text: str, spaced: bool, complete: bool) -> list[int]:
    """End offsets (exclusive) of the complete target units of a draft `text`.

    Spaced languages: whitespace words; the last word counts only when `complete` (the draft ended with a
    stop token) since the next token could continue it. Unspaced (zh/ja): every non-space character.
    """
    if not spaced:
        return [i + 1 for i, c in enumerate(text) if not c.isspace()]
    ends = [m.end() for m in _UNIT.finditer(text)]
    if ends and not complete and ends[-1] == len(text):
        ends.pop()
    return ends


def unit_cut(text: str, keep_chars: int, spaced: bool, complete: bool) -> int:
    """Characters of the draft `text` to emit when the policy accepted its first `keep_chars` characters.

    Cuts back to the end of the last complete unit inside the accepted part; a word is complete when
    whitespace follows it in the draft, or at the draft's end when `complete`. Trailing whitespace is
    never emitted (the next emission brings its own leading space).
    """
    if not 0 <= keep_chars <= len(text):
        raise AlignheadsError(f"keep_chars {keep_chars} out of range for a draft of {len(text)} characters")
    # Units are maximal non-space runs, so a unit ending at keep_chars < len(text) is followed by whitespace.
    done = [e for e in unit_ends(text, spaced, complete and keep_chars == len(text)) if e <= keep_chars]
    return done[-1] if done else 0


# ----------------------------------------------------------------------------- baselines on draft units


def wait_k(n_draft_units: int, n_emitted: int, n_accessible: int, k: int) -> int:
    """wait-k (Ma et al. 2019) in units: after k source words, one target unit per source word.

    Returns how many of the draft's units to emit: target unit j may go out once j + k source words are accessible.
    """
    if k < 1:
        raise AlignheadsError(f"wait-k needs k >= 1, got {k}")
    allowed = max(0, n_accessible - k + 1) - n_emitted
    return max(0, min(n_draft_units, allowed))


def cut_last(n_draft_words: int, x: int) -> int:
    """Static cut-last-x: emit the draft minus its last x words (its incomplete tail counts as a word)."""
    if x < 0:
        raise AlignheadsError(f"cut-last needs x >= 0, got {x}")
    return max(0, n_draft_words - x)


def local_agreement(previous: Sequence[str] | None, current: Sequence[str]) -> int:
    """LocalAgreement-2: the number of leading units two consecutive drafts agree on (0 for the first draft)."""
    if previous is None:
        return 0
    n = 0
    for a, b in zip(previous, current, strict=False):
        if a != b:
            break
        n += 1
    return n


def diagonal_positions(token_words: Sequence[int], n_src: int, n_tgt: int) -> np.ndarray:
    """Positional baseline: the draft token of target word j aligns to source word round(j·(n_src−1)/(n_tgt−1))."""
    if n_src < 1 or n_tgt < 1:
        raise AlignheadsError(f"diagonal positions need n_src, n_tgt >= 1, got {n_src}, {n_tgt}")
    return diagonal_words(n_src, n_tgt)[np.asarray(token_words, dtype=int)]


# ----------------------------------------------------------------------------- the policy registry


@dataclass
class DraftView:
    """What a policy sees of one draft (the translator builds it; `attention` only for policies that need heads)."""

    text: str  # the draft's text
    token_ends: list[int]  # token_ends[t]: characters of `text` covered by the first t draft tokens
    complete: bool  # the draft ended with a stop token, so its last unit is whole
    spaced: bool  # target units are whitespace words (else characters)
    n_accessible: int  # source words the policy may rely on
    n_emitted: int  # target units of this sentence already emitted
    attention: np.ndarray | None = None  # [heads, draft tokens, source words]
    held_end: bool = False  # the draft's sentence end (and all after it) was cut off: see `hold_sentence_end`
    head_weights: Sequence[float] | None = None  # per head (learned); None = the plain mean
    n_shown: int = 0  # source words the prompt shows (accessible or not)
    border: Any = None  # a learned border (alignheads.heads.border.BorderModel), for the learned-border policy
    border_index: Sequence[int] = ()  # which rows of `attention` are the border's heads, in its order

    @property
    def n_tokens(self) -> int:
        return len(self.token_ends) - 1


def hold_sentence_end(view: DraftView) -> DraftView:
    """The part of a draft a policy may commit before the source sentence is final: the text before its first
    sentence-final punctuation (the word before the mark is whole) and the tokens that reach into it."""
    at = sentence_end(view.text)
    if at is None:
        return view
    text = view.text[:at].rstrip()
    n = next((t for t, e in enumerate(view.token_ends) if e >= len(text)), view.n_tokens)
    attention = None if view.attention is None else view.attention[:, :n]
    return replace(view, text=text, token_ends=[min(e, len(text)) for e in view.token_ends[: n + 1]],
                   complete=True, attention=attention, held_end=True)


@dataclass
class Cut:
    """A policy's decision on a draft: accepted tokens, characters to emit (whole units), and why it stopped."""

    keep_tokens: int
    chars: int
    reason: str
    stop_index: int | None = None  # the draft token that stopped the scan (AlignAtt)
    positions: np.ndarray | None = None  # aligned source word per draft token (AlignAtt)
    head_positions: np.ndarray | None = None  # the same per head [heads, tokens]


class Policy:
    """A simultaneous policy: its name, the config field a quality-latency curve varies, its default sweep grid,
    and `decide(view, config, state)` on one draft. `state` is a dict the translator resets per sentence."""

    name: str = ""
    param: str | None = None  # dotted attribute of TranslatorConfig, e.g. "alignatt.border"
    grid: tuple = ()
    needs_heads: bool = False

    def decide(self, view: DraftView, config: Any, state: dict) -> Cut:
        raise NotImplementedError

    def param_value(self, config: Any) -> Any:
        """The value of this policy's swept parameter in `config` (None for a parameter-free policy)."""
        value = config
        for attr in (self.param or "").split(".") if self.param else ():
            value = getattr(value, attr)
        return None if self.param is None else value

    def with_param(self, config: Any, value: Any) -> Any:
        """A copy of `config` with this policy's swept parameter set to `value`."""
        if self.param is None:
            return config
        head, _, rest = self.param.partition(".")
        if not rest:
            return replace(config, **{head: type(getattr(config, head))(value)})
        inner = getattr(config, head)
        return replace(config, **{head: replace(inner, **{rest: type(getattr(inner, rest))(value)})})


class AlignAtt(Policy):
    """AlignAtt on the draft's head attention (border and rewind rules), then cut back to whole units."""

    name, param, grid, needs_heads = "alignatt", "alignatt.border", (1, 0, -1, -2, -3), True

    def decide(self, view: DraftView, config: Any, state: dict) -> Cut:
        cfg = config.alignatt
        positions, head_pos = alignatt_positions(view.attention, cfg, view.head_weights)
        keep, reason, stop = alignatt_cut(positions, view.n_accessible, cfg, state.get("last_position"))
        # whole: the accepted tokens reach the end of a draft whose last word is complete
        whole = view.complete and (keep == view.n_tokens or view.token_ends[keep] >= len(view.text))
        chars = unit_cut(view.text, len(view.text) if whole else view.token_ends[keep], view.spaced, whole)
        emitted = [t for t in range(keep) if view.token_ends[t + 1] <= chars]
        if emitted:  # the rewind rule compares with the last token that went out
            state["last_position"] = int(positions[emitted[-1]])
        return Cut(keep, chars, reason, stop, positions, head_pos)


class _UnitPolicy(Policy):
    """A baseline that decides in whole target units of the draft."""

    reason = ""

    def keep_units(self, units: list[str], view: DraftView, config: Any, state: dict) -> int:
        raise NotImplementedError

    def decide(self, view: DraftView, config: Any, state: dict) -> Cut:
        ends = unit_ends(view.text, view.spaced, view.complete)
        units = [view.text[(ends[i - 1] if i else 0): e].strip() for i, e in enumerate(ends)]
        keep = self.keep_units(units, view, config, state)
        chars = ends[keep - 1] if keep else 0
        keep_tokens = next((t for t in range(view.n_tokens + 1) if view.token_ends[t] >= chars), view.n_tokens)
        return Cut(keep_tokens, chars, END_OF_DRAFT if keep == len(units) else self.reason)


class WaitK(_UnitPolicy):
    """wait-k: after k source words, one target unit per source word."""

    name, param, grid, reason = "wait-k", "wait_k", (1, 2, 3, 5), "wait_k"

    def keep_units(self, units, view, config, state) -> int:
        return wait_k(len(units), view.n_emitted, view.n_accessible, config.wait_k)


class CutLast(_UnitPolicy):
    """cut-last-x: emit the draft minus its last x words."""

    name, param, grid, reason = "cut-last", "cut_last", (0, 1, 2, 3, 4), "cut_last"

    def keep_units(self, units, view, config, state) -> int:
        words = len(view.text.split()) if view.spaced else len(units)
        return min(len(units), cut_last(words, config.cut_last))


class LocalAgreementPolicy(_UnitPolicy):
    """LocalAgreement-n (LA-n): emit what the last n consecutive drafts agree on (n = `la_n`, 2 by default)."""

    name, param, grid, reason = "local-agreement", "la_n", (2, 3, 4), "local_agreement"

    def keep_units(self, units, view, config, state) -> int:
        if config.la_n < 2:
            raise AlignheadsError(f"local agreement needs n >= 2 drafts, got {config.la_n}")
        history = state.setdefault("history", [])  # earlier drafts' units after what was emitted, newest last
        # Agreement is between drafts of successive *inputs*: an update that shows no new source word (a held-back word
        # became accessible, or what was agreed was just emitted) drafts the same input again, and counting that draft
        # would make LA-n agree with itself.
        if history and view.n_shown == state.get("shown"):
            return 0
        state["shown"] = view.n_shown
        need = config.la_n - 1  # earlier drafts that must agree with this one
        keep = min(local_agreement(h, units) for h in history) if len(history) >= need else 0
        older = history[-(need - 1):] if need > 1 else []  # what the next draft compares with, besides this one
        history[:] = [h[keep:] for h in older] + [units[keep:]]
        return keep


class LearnedBorder(Policy):
    """The learned border (`alignheads.heads.border`): each drafted word goes out while the classifier's P(ready) on
    its first token's prefix features is at least `border_threshold`; the scan stops at the first word that is not."""

    name, param, grid, needs_heads = "learned-border", "border_threshold", (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), True

    def decide(self, view: DraftView, config: Any, state: dict) -> Cut:
        border = view.border
        if border is None:
            raise AlignheadsError("the learned-border policy needs a head set with a learned border "
                                  "(alignheads score --condition prefix)")
        starts = word_starts(view.text, view.token_ends, view.spaced)
        keep, stop = view.n_tokens, None
        if starts:
            att = np.asarray(view.attention)[list(view.border_index)][:, starts]  # [k, words, shown]
            j = view.n_emitted + np.arange(len(starts))
            n = len(starts)
            x = border.design(view.n_accessible - att.argmax(-1).T, att.max(-1).T, np.full(n, view.n_accessible),
                              np.full(n, view.n_shown), j)
            waiting = np.flatnonzero(border.p_ready(x) < config.border_threshold)
            if len(waiting):
                keep = stop = starts[int(waiting[0])]
        whole = view.complete and keep == view.n_tokens
        chars = unit_cut(view.text, len(view.text) if whole else view.token_ends[keep], view.spaced, whole)
        return Cut(keep, chars, LEARNED_BORDER if stop is not None else END_OF_DRAFT, stop)


def word_starts(text: str, token_ends: Sequence[int], spaced: bool) -> list[int]:
    """The draft tokens that begin a target unit: after whitespace (or at the start) for spaced languages, every
    token that adds a character otherwise."""
    out = []
    for t in range(len(token_ends) - 1):
        start, end = token_ends[t], token_ends[t + 1]
        if end <= start:
            continue
        if not spaced or start == 0 or text[start].isspace() or text[start - 1].isspace():
            out.append(t)
    return out


POLICIES: dict[str, Policy] = {p.name: p for p in (AlignAtt(), WaitK(), CutLast(), LocalAgreementPolicy(),
                                                   LearnedBorder())}


def get_policy(name: str) -> Policy:
    """The registered policy called `name`; a clear error listing the known ones otherwise."""
    if name not in POLICIES:
        raise AlignheadsError(f"unknown policy {name!r}; choose one of {', '.join(POLICIES)}")
    return POLICIES[name]
