"""Incremental (simultaneous) translation with a decoder-only LLM under AlignAtt or a baseline policy.

Each `update(words, now)` renders the run-time prompt (every source word received so far, the
accepted translation as prefill), drafts up to `max_draft` greedy tokens (with q/k capture on the head
set's layers only, for AlignAtt), replays the selected heads' rows at the draft positions, pools them
to source words and lets the policy decide how much of the draft to emit. Output is append-only.

Never end early: before the source sentence is final (`final=False`), no policy commits the draft's end —
not the stop token (EOS / end-of-turn / newline) and not a sentence-final punctuation mark, nor anything
drafted after one (`policy.hold_sentence_end`): a model that drafts a short complete sentence from the first
words cannot close the target sentence while the speaker goes on. The update with `final=True` continues
from the committed prefix without a policy and translates the whole sentence to its end. Nor is a closing
bracket that nothing opened committed before then (`TranslatorConfig.hold_brackets`), and a final pass that
would add nothing after text committed before the last word was heard drafts again (`finish_unheard`). A draft
that writes the prompt's target label ("Italian:") ends before it (`stop_at_label`).

Time: one clock. `SourceWord.end_time` and `now` are seconds on the same stream clock (never times
relative to an utterance); a word is accessible when `end_time <= now - holdback`.

The KV cache is kept across updates (and sentences): the new prompt's token ids are compared with
the ids in the cache, the cache is cut back to the common prefix and only the rest is fed.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import OrderedDict
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from ..base.errors import AlignheadsError
from ..base.languages import get_language, target_units
from ..base.sentences import is_sentence_final, sentence_end, unopened_closer
from ..heads.headset import HeadLike, HeadSet, as_heads
from ..model.attention import pool_source_words, replay_rows
from ..model.capture import AttentionCapture
from ..model.kvcache import common_prefix, rollback
from ..model.loader import LoadedModel, broken_weights_hint
from ..model.prompts import PromptLayout, RenderedPrompt, render
from .config import TranslatorConfig
from .coverage import moves_toward, word_span
from .policy import END_OF_DRAFT, FINAL, POLICIES, SENTENCE_END, Cut, DraftView, hold_sentence_end

NO_SOURCE = "no_source"
NO_NEW_SOURCE = "no_new_source"
_END_TOKENS = ("<end_of_turn>", "<turn|>", "<|im_end|>", "<|eot_id|>", "<|end|>")


class TranslatorError(AlignheadsError):
    """The translator was given input it cannot work with (bad words, a source beyond the context, misuse)."""


@dataclass(frozen=True)
class SourceWord:
    """One source word and the stream-clock time (seconds) at which it ended."""

    text: str
    end_time: float


@dataclass
class TokenDecision:
    """One draft token and what the policy did with it."""

    index: int
    token_id: int
    text: str
    position: int | None  # aligned source word (AlignAtt), 0-based
    head_positions: list[int] | None
    status: str  # "emitted" | "unit_cut" | a stop reason (on the stopping token) | "after_stop" | "held" |
    # "sentence_end" (at or after a sentence end held back before the source is final)


@dataclass
class DecisionTrace:
    """Everything one update decided, inspectable (see `to_frame`)."""

    policy: str
    n_source: int
    n_accessible: int
    stop_reason: str
    stop_index: int | None = None  # draft token that stopped the scan
    tokens: list[TokenDecision] = field(default_factory=list)
    draft_text: str = ""
    draft_end: Literal["eos", "newline", "label", "max_draft", "length_cap"] | None = None
    kept_tokens: int = 0  # tokens the rule accepted (before the unit cut)
    emitted_chars: int = 0
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens served from the KV cache
    heads: list[str] = field(default_factory=list)
    attention: np.ndarray | None = None  # [heads, draft tokens, source words] as the rule saw it
    timings: dict[str, float] = field(default_factory=dict)  # prefill, draft, replay, decide (s); draft_forwards
    memo_hit: bool = False

    def to_frame(self):
        """One row per draft token: index, token_id, text, position, head_positions, status."""
        import pandas as pd

        return pd.DataFrame([asdict(t) for t in self.tokens],
                            columns=["index", "token_id", "text", "position", "head_positions", "status"])

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("attention")
        return d


@dataclass
class Update:
    """The result of one `update`: text appended to the output, its units, and the decision trace."""

    new_text: str
    emitted_units: list[str]
    decision_trace: DecisionTrace
    time: float  # `now` of the update (stream clock)
    n_source: int
    n_accessible: int
    final: bool
    compute_s: float  # wall time the update took (each remembered draft is charged what it first cost)
    first_unit: int = 0  # index (in the sentence's output) of emitted_units[0]

    @property
    def stop_reason(self) -> str:
        return self.decision_trace.stop_reason


@dataclass
class Draft:
    """A greedy draft: text tokens (stop token excluded), how it ended, and optionally the heads' attention."""

    ids: list[int]
    end: str
    tail: str = ""  # text a stop token carried before its newline
    attention: np.ndarray | None = None
    prompt_tokens: int = 0
    reused_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    compute_s: float = 0.0
    memo_hit: bool = False


@dataclass
class Forward:
    """One forward a draft needs: feed `tokens` into `translator`'s KV cache (recording into `capture`); it is
    answered with the decoder's last hidden states of the last `keep` of them."""

    translator: SimultaneousTranslator
    tokens: list[int]
    keep: int
    capture: AttentionCapture | None = None


@torch.inference_mode()
def run_forward(fw: Forward) -> torch.Tensor:
    """Run one `Forward` on its own (under the model's lock: capture records through the model's modules)."""
    tr = fw.translator
    with tr.lm.lock:
        if fw.capture is not None:
            fw.capture.attach()
        try:
            out = tr.lm.decoder(input_ids=torch.tensor([fw.tokens], device=tr.lm.device), cache=tr._cache,
                                use_cache=True)
        finally:
            if fw.capture is not None:
                fw.capture.detach()
    return out.last_hidden_state[0, -fw.keep:]


def drive(steps: Generator[Forward, torch.Tensor, Any]) -> Any:
    """Run a step generator (`update_steps`) to its end, one forward at a time; return what it returns."""
    hidden = None
    try:
        while True:
            with torch.inference_mode():
                request = steps.send(hidden)  # (the first send(None) starts it)
            hidden = run_forward(request)
    except StopIteration as done:
        return done.value


class SimultaneousTranslator:
    """Append-only simultaneous translation of one sentence at a time (call `reset()` between sentences)."""

    def __init__(
        self,
        lm: LoadedModel,
        heads: Sequence[HeadLike] | HeadSet | None = None,
        src_lang: str = "en",
        tgt_lang: str = "de",
        policy: str = "alignatt",
        config: TranslatorConfig | None = None,
        *,
        layout: PromptLayout | None = None,
        memo: OrderedDict | None = None,  # drafts by prompt and heads, shared only by translators of one model
    ):
        if policy not in POLICIES:
            raise TranslatorError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
        self.lm = lm
        self.policy = policy
        self._policy = POLICIES[policy]
        self.config = config or TranslatorConfig()
        self.layout = layout or PromptLayout.for_tokenizer(lm.tokenizer, src_lang, tgt_lang)
        self.src_lang, self.tgt_lang = self.layout.src_lang, self.layout.tgt_lang
        self.spaced = get_language(self.tgt_lang).spaced
        self._label = f"{get_language(self.tgt_lang).name}:" if self.config.stop_at_label else None
        self.heads = as_heads(heads, lm.facts, self.layout, self.config.top_k)
        self.head_weights = heads.top_weights(self.config.top_k) if isinstance(heads, HeadSet) else None
        self.border, self._border_index = None, []
        if policy == "learned-border":
            from ..heads.border import BorderModel

            if not (isinstance(heads, HeadSet) and heads.border):
                raise TranslatorError("the learned-border policy needs a head set with a learned border "
                                      "(alignheads score --condition prefix)")
            self.border = BorderModel.from_dict(heads.border, "head set: border")
            if self.border.heads:  # capture what the border reads (a position-only border reads no head)
                self.heads = as_heads(self.border.heads, lm.facts, self.layout)
            self._border_index = list(range(len(self.border.heads)))
        calibrated = heads.calibration.get("dtype") if isinstance(heads, HeadSet) else None
        if calibrated and calibrated.split("+")[0] != lm.dtype.split("+")[0]:  # the decoder's dtype is the attention's
            warnings.warn(f"the head set was calibrated on {calibrated} attention and is used with {lm.dtype}: the "
                          "heads' attention differs from what was scored (calibrate with this dtype to match)",
                          stacklevel=2)
        if self._policy.needs_heads and not self.heads:
            raise TranslatorError(f"the {policy} policy needs alignment heads (a HeadSet or a list of Head)")
        self._layers = sorted({h.layer for h in self.heads})
        self._groups: dict[tuple[int, str], list[int]] = {}
        for i, h in enumerate(self.heads):
            self._groups.setdefault((h.layer, h.query), []).append(i)
        tok = lm.tokenizer
        ids = {tok.eos_token_id, *(_ids(getattr(lm.model, "generation_config", None)))}
        vocab = tok.get_vocab()
        ids.update(vocab[t] for t in _END_TOKENS if t in vocab)
        self._stop_ids = {i for i in ids if i is not None}
        cfg_limit = getattr(lm.model.config.get_text_config(), "max_position_embeddings", None)
        self.context_limit = self.config.context_limit or cfg_limit or 2**31
        # A memo shared by translators of one sweep (same model and layout) is passed in; else own.
        self._memo = memo if memo is not None else (OrderedDict() if self.config.memo_size else None)
        self._cache = None
        self._cache_ids: list[int] = []
        self._memo_s = 0.0  # seconds of the memo hits of the current update (their drafts' original cost)
        self.stats = {"updates": 0, "model_updates": 0, "prompt_tokens": 0, "reused_tokens": 0,
                      "draft_tokens": 0, "memo_hits": 0, "draft_forwards": 0, "guess_tokens": 0,
                      "guess_accepted": 0}
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Start the next sentence: forget the source and the output (the KV cache stays, it is keyed by ids)."""
        self.target = ""
        self.history: list[Update] = []
        self.finished = False
        self._last_key: tuple | None = None
        self._state: dict = {}  # the policy's per-sentence memory
        self._n_units = 0
        # accessible source words when text was last added (0: none yet; None: unknown, resumed)
        self._covered: int | None = 0
        self._guess: list[int] = []  # the last draft's tokens after what was emitted: the next draft's likely start

    def resume(self, accepted: str) -> None:
        """Start a sentence whose translation already begins with `accepted` (shown before a reconnect); later
        output extends it."""
        self.reset()
        self.target = accepted.strip()
        self._n_units = len(target_units(self.target, self.tgt_lang))
        self._covered = None

    @property
    def heads_label(self) -> list[str]:
        return [str(h) for h in self.heads]

    # ------------------------------------------------------------------ update
    def update(self, words: Sequence[SourceWord], now: float, final: bool = False) -> Update:
        """Take the current source (every word received, with end times on the stream clock) and emit what the
        policy allows; with `final` the source is complete and the sentence is translated to the end."""
        return drive(self.update_steps(words, now, final))

    def update_steps(self, words: Sequence[SourceWord], now: float,
                     final: bool = False) -> Generator[Forward, torch.Tensor, Update]:
        """`update` as steps: yields every forward the update needs (`Forward`), to be answered with the decoder's
        hidden states (`drive` runs them one by one; a server batches the draft steps of several sessions)."""
        t_start, self._memo_s = time.perf_counter(), 0.0
        words = self._check_words(words, now)
        if self.finished:
            if final:
                return self._empty(words, now, len(words), FINAL, final, t_start)
            raise TranslatorError("this sentence was already finished (final=True): call reset() first")
        n_acc = len(words) if final else sum(1 for w in words if w.end_time <= now - self.config.holdback)
        key = (tuple(w.text for w in words), n_acc, final)
        self.stats["updates"] += 1
        if not words:
            self.finished = final
            return self._empty(words, now, 0, FINAL if final else NO_SOURCE, final, t_start)
        if key == self._last_key:
            return self._empty(words, now, n_acc, NO_NEW_SOURCE, final, t_start)
        prompt = render(self.layout, self.lm.tokenizer, [w.text for w in words], prefix=self.target)
        if final:
            must = max(0, math.ceil(self.config.final_min_ratio * len(words)) - self._n_units)
            draft = yield from self._draft(prompt, self._final_cap(prompt), attention=False, end_if_cap="length_cap",
                                           min_units=must)
            if self._stops_unheard(words, draft):
                again = yield from self._finish(words, prompt, must)
                draft = draft if again is None else again
        else:
            draft = yield from self._draft(prompt, self.config.alignatt.max_draft, attention=self._policy.needs_heads)
        self._last_key = key  # only once the draft succeeded: a failed update is retried, not skipped
        t_decide = time.perf_counter()
        trace = self._decide(prompt, draft, n_acc, len(words), final)
        trace.timings["decide"] = time.perf_counter() - t_decide
        new_text = trace.draft_text[: trace.emitted_chars]
        if not self.target:
            new_text = new_text.lstrip()
        self._guess = self._unsent(draft, trace) if self.config.guess and not final else []
        before = self._n_units
        self.target += new_text
        if new_text.strip():
            self._covered = n_acc
        units = target_units(self.target, self.tgt_lang)
        emitted = units[before:]
        self._n_units = len(units)
        self.finished = final
        compute = time.perf_counter() - t_start + self._memo_s
        upd = Update(new_text, emitted, trace, now, len(words), n_acc, final, compute, before)
        self.history.append(upd)
        return upd

    def _stops_unheard(self, words: Sequence[SourceWord], draft: Draft) -> bool:
        """True when a final draft adds nothing though the text was last committed (or nothing was) before the
        sentence's last word was accessible and the source ends with a sentence-final mark (`finish_unheard`)."""
        if not self.config.finish_unheard or self._covered is None:
            return False
        texts = [w.text for w in words]
        return (not self._text(draft).strip()
                and self._covered < word_span(texts)[1] and is_sentence_final(texts[-1]))

    def _finish(self, words: Sequence[SourceWord], prompt: RenderedPrompt,
                must: int) -> Generator[Forward, torch.Tensor, Draft | None]:
        """The final pass drafted again without stop tokens until a sentence-final mark (`finish_unheard`), or None
        when that does not bring the translation closer to the model's own translation of the whole sentence (chrF):
        a continuation that only ends the sentence ("1."), invents ("(Quelle: Google).") or repeats itself."""
        cap = min(8 + 3 * (len(words) - self._covered), self._final_cap(prompt))
        again = yield from self._draft(prompt, cap, attention=False, end_if_cap="length_cap", min_units=must,
                                       finish=True)
        if not self._text(again).strip():
            return None
        offline = yield from self._offline_steps([w.text for w in words])
        return again if moves_toward(self.target, self._text(again), offline) else None

    def _text(self, draft: Draft) -> str:
        """A draft's text: its tokens decoded, plus the text after its last whole token."""
        return self.lm.tokenizer.decode(draft.ids) + draft.tail

    def offline(self, words: Sequence[str]) -> str:
        """The same model's translation of the whole sentence `words` without a policy (the final pass from an
        empty prefix), for coverage checks; the sentence being translated and `stats` are left alone."""
        stats = dict(self.stats)
        text = drive(self._offline_steps(words))
        self.stats = stats
        return text

    def _offline_steps(self, words: Sequence[str]) -> Generator[Forward, torch.Tensor, str]:
        """`offline` as steps (see `update_steps`), counted in `stats`."""
        prompt = render(self.layout, self.lm.tokenizer, list(words))
        draft = yield from self._draft(prompt, self._final_cap(prompt), attention=False, end_if_cap="length_cap")
        return self._text(draft).strip()

    def _final_cap(self, prompt: RenderedPrompt) -> int:
        """Length cap of a policy-free pass: 16 tokens plus 3 per source token, at most `final_max_tokens`."""
        return min(self.config.final_max_tokens, 16 + 3 * (prompt.src_token_span[1] - prompt.src_token_span[0]))

    def _check_words(self, words, now) -> list[SourceWord]:
        if not isinstance(now, (int, float)) or not math.isfinite(now):
            raise TranslatorError(f"now must be a finite number of seconds on the stream clock, got {now!r}")
        out: list[SourceWord] = []
        for i, w in enumerate(words):
            if isinstance(w, tuple) and len(w) == 2:
                w = SourceWord(*w)
            if not isinstance(w, SourceWord):
                raise TranslatorError(f"word {i}: expected SourceWord(text, end_time), got {w!r}")
            text = w.text.strip() if isinstance(w.text, str) else None
            if not text or any(c.isspace() for c in text):
                raise TranslatorError(f"word {i}: text must be one non-empty word without spaces, got {w.text!r}")
            if not isinstance(w.end_time, (int, float)) or not math.isfinite(w.end_time):
                raise TranslatorError(f"word {i} ({text!r}): end_time must be a finite number, got {w.end_time!r}")
            if out and w.end_time < out[-1].end_time:
                raise TranslatorError(f"word {i} ({text!r}) ends at {w.end_time} before word {i - 1} "
                                      f"({out[-1].end_time}): end times must not decrease")
            out.append(w if text == w.text else SourceWord(text, w.end_time))
        return out

    def _empty(self, words, now, n_acc, reason, final, t_start) -> Update:
        trace = DecisionTrace(self.policy, len(words), n_acc or 0, reason, heads=self.heads_label)
        upd = Update("", [], trace, now, len(words), n_acc or 0, final, time.perf_counter() - t_start, self._n_units)
        self.history.append(upd)
        return upd

    # ------------------------------------------------------------------ drafting
    def _draft(self, prompt: RenderedPrompt, max_tokens: int, attention: bool, end_if_cap: str = "max_draft",
               min_units: int = 0, finish: bool = False) -> Generator[Forward, torch.Tensor, Draft]:
        P = len(prompt)
        if P + max_tokens + 1 > self.context_limit:
            raise TranslatorError(
                f"the prompt ({P} tokens for {len(prompt.src_words)} source words and {len(self.target)} characters "
                f"of accepted output) plus {max_tokens} draft tokens exceeds the context limit of "
                f"{self.context_limit} tokens; end the sentence (final=True) sooner or raise "
                "TranslatorConfig.context_limit if the model allows more"
            )
        # The captured heads are in the key: one memo may serve translators that read different heads (a sweep over
        # AlignAtt and the learned border), and a draft's attention holds the rows of its own heads only.
        key = (tuple(prompt.input_ids), max_tokens, end_if_cap, min_units, finish, tuple(self.heads))
        if self._memo is not None and key in self._memo:
            hit: Draft = self._memo[key]
            if hit.attention is not None or not attention:
                self._memo.move_to_end(key)
                self.stats["memo_hits"] += 1
                self._memo_s += hit.compute_s  # computed once, charged as if computed now (computation-aware)
                return Draft(hit.ids, hit.end, hit.tail, hit.attention, hit.prompt_tokens, hit.prompt_tokens,
                             dict(hit.timings), hit.compute_s, memo_hit=True)
        draft = yield from self._generate(prompt, max_tokens, attention, end_if_cap, self._guess, min_units, finish)
        if self._memo is not None:
            self._memo[key] = draft
            while len(self._memo) > max(1, self.config.memo_size):
                self._memo.popitem(last=False)
        return draft

    def _generate(self, prompt: RenderedPrompt, max_tokens: int, attention: bool, end_if_cap: str,
                  guess: Sequence[int] = (), min_units: int = 0,
                  finish: bool = False) -> Generator[Forward, torch.Tensor, Draft]:
        """Greedy draft of up to `max_tokens` after `prompt`, the heads' q/k captured when `attention`.

        `guess` (token ids the draft probably starts with: the last draft's unsent tokens) is fed with the prompt
        in one forward; each guessed token the model itself predicts is accepted without a forward of its own,
        the first it does not predict gives the next token for free, and the cache and capture are cut back to
        the accepted ones. The draft is the same as without a guess (up to float rounding between batched and
        single-token forwards)."""
        from transformers import DynamicCache

        t0 = time.perf_counter()
        model, tok = self.lm.model, self.lm.tokenizer
        ids = prompt.input_ids
        P = len(ids)
        reused = 0
        if self.config.reuse_cache and self._cache is not None:
            reused = min(common_prefix(self._cache_ids, ids), P - 1)
            if not rollback(self._cache, reused):
                reused = 0
        if reused == 0:
            self._cache = DynamicCache(config=model.config)
            self._cache.activate_past_recording()  # sliding layers keep every position, so rollback stays possible
        self._cache_ids = list(ids[:reused])
        need_own = attention and any(h.query == "own" for h in self.heads)
        need_emit = attention and any(h.query == "emit" for h in self.heads)
        capture = AttentionCapture(model, self._layers, q_from=P - 1 if need_emit else P) if attention else None
        guess = [g for g in guess[:max_tokens] if g not in self._stop_ids]
        out_ids: list[int] = []
        end, tail = None, ""
        timings: dict[str, float] = {}
        forwards = 0

        def forward(new: list[int], keep: int) -> Generator[Forward, torch.Tensor, torch.Tensor]:
            """Feed `new` tokens (in chunks of `prefill_chunk`); the decoder's last hidden states of the last `keep`."""
            nonlocal forwards
            chunk = self.config.prefill_chunk or len(new)
            for start in range(0, len(new), chunk):
                part = new[start:start + chunk]
                forwards += 1
                hidden = yield Forward(self, part, keep if start + chunk >= len(new) else 1, capture)
                self._cache_ids.extend(part)
            return hidden

        def stop(nxt: int) -> bool:
            nonlocal end, tail
            if nxt in self._stop_ids:
                end = "eos"
            elif self.config.stop_at_newline and "\n" in (piece := tok.decode([nxt])):
                end, tail = "newline", piece.split("\n", 1)[0]
            return end is not None

        def wrote_label() -> bool:
            """True when the draft has just written the prompt's target label, its tokens then dropped."""
            nonlocal end
            if self._label is None or not tok.decode(out_ids[-1:]).endswith(":"):
                return False
            text = tok.decode(out_ids)
            if not text.endswith(self._label):
                return False
            at = len(text) - len(self._label)
            while out_ids and len(tok.decode(out_ids)) > at:
                out_ids.pop()
            end = "label"
            return True

        def choose(row: torch.Tensor, nxt: int) -> int:
            """`nxt`, unless it would end a draft that must still grow to `min_units` target units or, with `finish`,
            that has no sentence-final mark yet."""
            if (min_units or finish) and (nxt in self._stop_ids
                                          or (self.config.stop_at_newline and "\n" in tok.decode([nxt]))):
                text = tok.decode(out_ids)
                if len(target_units(text, self.tgt_lang)) < min_units or (finish and sentence_end(text) is None):
                    return self.lm.greedy.argmax(row[None], banned=self._enders())[0]
            return nxt

        if capture is not None:
            capture.reset()  # recorded into across this draft's forwards (Forward.capture)
        hidden = yield from forward(list(ids[reused:]) + guess, len(guess) + 1)  # row i predicts position P + i
        prefill_forwards = forwards
        if not bool(torch.isfinite(hidden).all()):  # broken weights: never emit their argmax
            raise TranslatorError(f"{self.lm.facts.model_id} computes NaN/inf hidden states; "
                                  f"{broken_weights_hint(self.lm)}")
        timings["prefill"] = time.perf_counter() - t0
        for i, nxt in enumerate(self.lm.greedy.argmax(hidden)):
            if stop(nxt := choose(hidden[i], nxt)):
                break
            out_ids.append(nxt)
            if wrote_label() or i >= len(guess) or nxt != guess[i] or len(out_ids) == max_tokens:
                break
        accepted = common_prefix(out_ids, guess)  # guessed tokens the model chose itself: their keys are right
        fed = P + accepted
        if len(self._cache_ids) > fed:  # rejected guessed tokens: cut them out of the cache and the capture
            rollback(self._cache, fed)
            del self._cache_ids[fed:]
            if capture is not None:
                capture.truncate(fed)
        while end is None and out_ids and len(self._cache_ids) < P + len(out_ids):  # the last token is unfed
            if len(out_ids) == max_tokens and not need_own:
                break  # its own row is not needed: do not feed it
            hidden = yield from forward([out_ids[-1]], 1)
            if len(out_ids) == max_tokens:
                break
            if not stop(nxt := choose(hidden[-1], self.lm.greedy.argmax(hidden)[0])):
                out_ids.append(nxt)
                wrote_label()
        timings["draft"] = time.perf_counter() - t0 - timings["prefill"]
        timings["draft_forwards"] = forwards - prefill_forwards  # forwards after the prefill
        att = None
        if attention:
            t1 = time.perf_counter()
            att = self._attention(capture, prompt, P, len(out_ids))
            timings["replay"] = time.perf_counter() - t1
        self.stats["model_updates"] += 1
        self.stats["prompt_tokens"] += P
        self.stats["reused_tokens"] += reused
        self.stats["draft_tokens"] += len(out_ids)
        self.stats["draft_forwards"] += forwards
        self.stats["guess_tokens"] += len(guess)
        self.stats["guess_accepted"] += accepted
        return Draft(out_ids, end or end_if_cap, tail, att, P, reused, timings, time.perf_counter() - t0)

    def _enders(self) -> torch.Tensor:
        """Ids of the tokens that end a draft: stop tokens and, with `stop_at_newline`, any with a newline (found once
        per tokenizer, by decoding the vocabulary)."""
        tok = self.lm.tokenizer
        if getattr(tok, "_alignheads_newlines", None) is None:
            tok._alignheads_newlines = [i for i, piece in enumerate(tok.batch_decode([[i] for i in range(len(tok))]))
                                        if "\n" in piece]
        ids = set(self._stop_ids) | (set(tok._alignheads_newlines) if self.config.stop_at_newline else set())
        return torch.tensor(sorted(ids), dtype=torch.long)

    def _unsent(self, draft: Draft, trace: DecisionTrace) -> list[int]:
        """The draft's tokens after the emitted text, when the emission ended on a token boundary (the guess for the
        next draft, which continues from exactly that text)."""
        ends = self._char_ends(draft.ids, self.lm.tokenizer.decode(draft.ids))
        return list(draft.ids[ends.index(trace.emitted_chars):]) if trace.emitted_chars in ends else []

    def _attention(self, cap: AttentionCapture, prompt: RenderedPrompt, P: int, n: int) -> np.ndarray:
        """Selected heads' attention of the n draft tokens on the source words: [heads, n, source words]."""
        S = len(prompt.src_tokens)
        att = np.zeros((len(self.heads), n, S), dtype=np.float32)
        if n == 0:
            return att
        for (layer, query), idx in self._groups.items():
            first = P if query == "own" else P - 1
            rows = replay_rows(cap, layer, [self.heads[i].head for i in idx], range(first, first + n))
            att[idx] = pool_source_words(rows, prompt.src_tokens).cpu().numpy()
        return att

    # ------------------------------------------------------------------ deciding
    def _char_ends(self, ids: list[int], text: str) -> list[int]:
        """ends[t]: characters of `text` covered by the first t tokens (a split multi-byte character waits)."""
        ends = [0]
        for t in range(1, len(ids) + 1):
            s = self.lm.tokenizer.decode(ids[:t])
            ok = text.startswith(s) and not s.endswith("\ufffd")
            ends.append(len(s) if ok else ends[-1])
        return ends

    def _decide(self, prompt: RenderedPrompt, draft: Draft, n_acc: int, n_src: int, final: bool) -> DecisionTrace:
        n = len(draft.ids)
        body = self.lm.tokenizer.decode(draft.ids)
        text = body + draft.tail
        ends = self._char_ends(draft.ids, body)
        trace = DecisionTrace(self.policy, n_src, n_acc, END_OF_DRAFT, draft_text=text, draft_end=draft.end,
                              prompt_tokens=draft.prompt_tokens, reused_tokens=draft.reused_tokens,
                              heads=self.heads_label, attention=draft.attention, timings=dict(draft.timings),
                              memo_hit=draft.memo_hit)
        held = None
        if final:
            cut = Cut(n, len(text.rstrip()), FINAL)
        else:
            view = hold_sentence_end(DraftView(text, ends, draft.end in ("eos", "newline"), self.spaced, n_acc,
                                               self._n_units, draft.attention, head_weights=self.head_weights,
                                               n_shown=n_src, border=self.border, border_index=self._border_index))
            cut = self._policy.decide(view, self.config, self._state)
            if self.config.hold_brackets:
                cut = self._hold_bracket(cut, text, ends)
            if view.held_end:
                held = len(view.text)
                if cut.chars >= held or cut.reason == END_OF_DRAFT:  # the sentence end, not the rule, stopped it
                    cut = replace(cut, reason=SENTENCE_END, stop_index=None)
        trace.stop_reason, trace.stop_index = cut.reason, cut.stop_index
        trace.kept_tokens, trace.emitted_chars = cut.keep_tokens, cut.chars
        for t in range(n):
            if t < cut.keep_tokens and ends[t + 1] <= cut.chars:
                status = "emitted"
            elif held is not None and ends[t + 1] > held:  # reaches past the held sentence end
                status = SENTENCE_END
            elif t < cut.keep_tokens:
                status = "unit_cut"
            elif cut.stop_index is not None:
                status = cut.reason if t == cut.stop_index else "after_stop"
            else:
                status = "held"
            scanned = cut.positions is not None and t < len(cut.positions)  # (not past a held sentence end)
            trace.tokens.append(TokenDecision(
                t, draft.ids[t], body[ends[t]: ends[t + 1]],
                int(cut.positions[t]) if scanned else None,
                [int(p) for p in cut.head_positions[:, t]] if scanned else None,
                status,
            ))
        return trace

    def _hold_bracket(self, cut: Cut, text: str, ends: list[int]) -> Cut:
        """`cut` without a closing bracket that nothing opened and all after it (see `TranslatorConfig.hold_brackets`):
        the word before it is whole, the tokens that reach into it are not kept. The policy decided on the whole
        draft and remembers so (LA's history starts after the bracket's unit, AlignAtt's last position is past it):
        deciding again on the text before it instead would make LA compare "modello" with "modello)" and never
        agree on the word before the bracket."""
        at = unopened_closer(text[: cut.chars], self.target)
        if at is None:
            return cut
        chars = len(text[:at].rstrip())
        keep = max(t for t, e in enumerate(ends[: cut.keep_tokens + 1]) if e <= chars)
        return replace(cut, keep_tokens=keep, chars=chars, reason=SENTENCE_END, stop_index=None)

    # ------------------------------------------------------------------ views
    def trace_frame(self, origin: float = 0.0):
        """The sentence's emissions as the DataFrame `alignheads.lab.viz.policy_trace` plots (time from origin)."""
        return policy_trace_frame(self.history, origin)


def policy_trace_frame(updates: Sequence[Update], origin: float = 0.0):
    """One row per emitted target unit: time, source_available, target_index, text, stop_reason.

    `stop_reason` is the rule that ended the update, on the last unit it emitted ("" on the others).
    """
    import pandas as pd

    rows = []
    for u in updates:
        for i, unit in enumerate(u.emitted_units):
            last = i == len(u.emitted_units) - 1
            rows.append({"time": u.time - origin, "source_available": u.n_accessible,
                         "target_index": u.first_unit + i, "text": unit,
                         "stop_reason": u.stop_reason if last else ""})
    return pd.DataFrame(rows, columns=["time", "source_available", "target_index", "text", "stop_reason"])


def _ids(generation_config) -> list[int]:
    eos = getattr(generation_config, "eos_token_id", None)
    if eos is None:
        return []
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]
