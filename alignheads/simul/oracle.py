"""Oracle evaluation of the AlignAtt rule alone, on gold alignments.

The reference translation is forced as the draft, the source is revealed word by word, and a target
word counts as premature when the rule lets it out before all of its gold-aligned source words are
available; over-wait is how many source words later than needed it went out. The selected heads are
compared with the mean of all heads and the positional (diagonal) baseline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..base.errors import AlignheadsError
from ..corpus.pairs import Corpus, SentencePair
from ..heads.combine import combine_heads
from ..heads.headset import Head, HeadLike, HeadSet, as_heads
from ..heads.readiness import length_ratio, needed_sources, prefix_steps
from ..model.attention import pool_source_words
from ..model.loader import LoadedModel
from ..model.prompts import PromptLayout, render
from .policy import AlignAttConfig, alignatt_cut, alignatt_positions, diagonal_positions


def _emission_steps(attn_or_pos, word_tokens: list[list[int]], n_tokens: int, final_n: int, cfg: AlignAttConfig,
                    fixed: bool, steps: Sequence[int], weights: Sequence[float] | None = None) -> list[int]:
    """When (number of accessible source words) each target word is emitted, scanning a teacher-forced draft.

    `word_tokens[j]` are target word j's token indices (a token shared by two words belongs to both);
    `attn_or_pos` is, per step in `steps` (accessible words), the attention [heads, tokens, src] (or, with
    `fixed`, one array of positions used at every step). The draft of a step is the next `max_draft` tokens
    after the emitted ones; a word goes out when all its tokens are accepted. Words left at the end go out with
    the final update (`final_n` accessible words).
    """
    emitted_at = [final_n] * len(word_tokens)
    u, start, last_pos = 0, 0, None  # first word not emitted, first token not emitted, rewind reference
    for k, n in enumerate(steps):
        if u >= len(word_tokens):
            break
        window = list(range(start, min(start + cfg.max_draft, n_tokens)))
        if fixed:
            positions = np.asarray(attn_or_pos)[window]
        else:
            positions, _ = alignatt_positions(attn_or_pos[k][:, window], cfg, weights)
        keep, _, _ = alignatt_cut(positions, n, cfg, last_pos)
        first = start
        while u < len(word_tokens) and max(word_tokens[u]) < first + keep:
            emitted_at[u] = n
            start = max(word_tokens[u]) + 1
            last_pos = int(positions[start - 1 - first])
            u += 1
    return emitted_at


def _variant_stats(emitted: list[list[int]], needs: list[dict[int, int]], n_srcs: list[int]) -> dict[str, Any]:
    premature, over, held, total, waits = 0, [], 0, 0, []
    for em, need, n_src in zip(emitted, needs, n_srcs, strict=True):
        for j, req in need.items():
            total += 1
            waits.append(em[j])
            if em[j] < req:
                premature += 1
            else:
                over.append(em[j] - req)
                held += em[j] == n_src and req < n_src
    return {
        "premature_rate": premature / total if total else None,
        "overwait_mean": float(np.mean(over)) if over else None,
        "overwait_median": float(np.median(over)) if over else None,
        "held_to_final_rate": held / total if total else None,
        "wait_mean": float(np.mean(waits)) if waits else None,  # source words available at emission
        "n_words": total,
    }


@dataclass
class _OraclePair:
    """Teacher-forced attention of one pair at every step of the revealed source, for the oracle."""

    n_src: int
    need: dict[int, int]
    word_tokens: list[list[int]]  # per target word, indices into the teacher-forced target tokens
    n_tokens: int
    steps: list[int]  # accessible source words at each step
    selected: list[np.ndarray]  # per step [heads, target tokens, source words] (the border's heads after them)
    mean: list[np.ndarray]  # per step [1, target tokens, source words]
    shown: list[int]  # source words in the prompt at each step


def _target_tokens(r) -> tuple[list[int], list[list[int]]]:
    """Token positions of the teacher-forced target, and per target word the indices of its tokens among them."""
    tokens = sorted({t for w in r.tgt_tokens for t in w})
    index = {t: i for i, t in enumerate(tokens)}
    return tokens, [[index[t] for t in w] for w in r.tgt_tokens]


def _oracle_pair(lm: LoadedModel, layout: PromptLayout, pair: SentencePair, selected: list[Head],
                 show_future: bool, pending: int = 0) -> _OraclePair:
    from ..heads.scoring import pair_rows

    L, H = lm.facts.num_layers, lm.facts.num_heads
    N = len(pair.src_words)
    word_tokens: list[list[int]] | None = None
    n_tokens = 0
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    steps = prefix_steps(N, show_future, pending)
    sel_steps, mean_steps = [], []
    for shown, _ in steps:
        if shown not in cache:
            r = render(layout, lm.tokenizer, pair.src_words[:shown], target_words=pair.tgt_words)
            tokens, wt = _target_tokens(r)
            if word_tokens is not None and wt != word_tokens:
                raise AlignheadsError(f"pair {pair.id!r}: the reference tokenises differently after "
                                      f"{shown} source words; the oracle needs one target tokenisation")
            word_tokens, n_tokens = wt, len(tokens)
            positions = sorted(set(tokens) | {t - 1 for t in tokens})
            index = {p: i for i, p in enumerate(positions)}
            rows = pair_rows(lm, r, positions)  # [L, H, n_pos, T], one forward
            words = pool_source_words(rows, r.src_tokens).numpy()  # [L, H, n_pos, S]
            own = [index[t] for t in tokens]
            emit = [index[t - 1] for t in tokens]
            sel = np.stack([words[h.layer, h.head, own if h.query == "own" else emit] for h in selected])
            mean = combine_heads(words[:, :, own].reshape(L * H, len(tokens), -1))[0][None]  # raw mean
            cache[shown] = (sel, mean)
        sel_steps.append(cache[shown][0])
        mean_steps.append(cache[shown][1])
    if word_tokens is None:  # a one-word source has no step before the final update
        word_tokens = [[j] for j in range(len(pair.tgt_words))]
        n_tokens = len(word_tokens)
    return _OraclePair(N, needed_sources(pair), word_tokens, n_tokens, [a for _, a in steps], sel_steps, mean_steps,
                       [s for s, _ in steps])


def _word_emissions(d: _OraclePair, ready: Callable[[int, int], bool]) -> list[int]:
    """When each target word goes out under a word-level rule `ready(step index, word)`: in order, at the first step
    the rule lets it (and every word before it) go; what is left goes out with the final update."""
    emitted_at, u = [d.n_src] * len(d.word_tokens), 0
    for k, n in enumerate(d.steps):
        while u < len(d.word_tokens) and ready(k, u):
            emitted_at[u], u = n, u + 1
    return emitted_at


def _border_ready(d: _OraclePair, border, first: int, threshold: float) -> Callable[[int, int], bool]:
    """The learned border's decision on word j at step k, from its heads' rows (after the selected heads in
    `d.selected`, from index `first`) at j's first token — the same feature path as in fitting and in the policy."""
    starts = [min(toks) for toks in d.word_tokens]
    cache: dict[int, np.ndarray] = {}

    def ready(k: int, j: int) -> bool:
        if k not in cache:
            att = d.selected[k][first:][:, starts]  # [border heads, words, shown]
            a, n = d.steps[k], len(starts)
            x = border.design(a - att.argmax(-1).T, att.max(-1).T, np.full(n, a), np.full(n, d.shown[k]),
                              np.arange(n))
            cache[k] = border.p_ready(x)
        return bool(cache[k][j] >= threshold)

    return ready


def _oracle_stats(data: list[_OraclePair], cfg: AlignAttConfig, weights: Sequence[float] | None = None,
                  rho: float | None = None, n_selected: int | None = None) -> dict[str, dict[str, Any]]:
    emitted: dict[str, list[list[int]]] = {"selected": [], "all_heads_mean": [], "diagonal": []}
    if rho is not None:
        emitted["causal_position"] = []
    for d in data:
        args = (d.word_tokens, d.n_tokens, d.n_src, cfg)
        sel = [s[:n_selected] for s in d.selected] if n_selected is not None else d.selected
        emitted["selected"].append(_emission_steps(sel, *args, False, d.steps, weights))
        if rho is not None:  # causal positional rule at the same border: ŝ = round(j·ρ̂) must be < a + b
            emitted["causal_position"].append(_word_emissions(
                d, lambda k, j, d=d: round(j * rho) < d.steps[k] + cfg.border))
        emitted["all_heads_mean"].append(_emission_steps(d.mean, *args, False, d.steps))
        token_word = [next(j for j, toks in enumerate(d.word_tokens) if i in toks) for i in range(d.n_tokens)]
        diag = diagonal_positions(token_word, d.n_src, len(d.word_tokens))
        emitted["diagonal"].append(_emission_steps(diag, *args, True, d.steps))
    needs, n_srcs = [d.need for d in data], [d.n_src for d in data]
    return {v: _variant_stats(e, needs, n_srcs) for v, e in emitted.items()}


def _border_stats(data: list[_OraclePair], border, first: int) -> list[dict[str, Any]]:
    """The learned border at each of its thresholds: premature rate and mean wait (one curve)."""
    needs, n_srcs = [d.need for d in data], [d.n_src for d in data]
    return [{"threshold": th, **_variant_stats([_word_emissions(d, _border_ready(d, border, first, th)) for d in data],
                                               needs, n_srcs)} for th in border.thresholds]


def policy_eval(
    lm: LoadedModel,
    corpus: Corpus,
    heads: Sequence[HeadLike] | HeadSet,
    cfg: AlignAttConfig | Sequence[AlignAttConfig] | None = None,
    *,
    layout: PromptLayout | None = None,
    limit: int | None = None,
    show_future: bool = False,
    pending: int = 0,
    top_k: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Oracle evaluation of AlignAtt on gold alignments, for the selected heads, the all-head mean and the diagonal.

    For each pair and each source prefix n = 1 … N−1 the prompt holds the source prefix (or, with `show_future`,
    the whole source with only the first n words accessible; with `pending` p, each new word is shown p steps
    before it counts as accessible: the cascade's hold-back) and the reference as the teacher-forced draft; the
    rule scans the next `max_draft` tokens after the words already emitted. A target word is premature when it is
    emitted with fewer source words available than its last gold-aligned source word needs; over-wait is how many
    source words later than needed it went out. Returns one JSON-able dict; given a list of configs, the forwards
    are shared and the dict holds one entry per config under "runs".
    """
    if not (isinstance(pending, int) and pending >= 0) or (pending and show_future):
        raise AlignheadsError(f"pending must be a whole number of steps >= 0, and 0 with show_future; got {pending!r}"
                              + (" with show_future" if show_future else ""))
    cfgs = [cfg or AlignAttConfig()] if cfg is None or isinstance(cfg, AlignAttConfig) else list(cfg)
    layout = layout or PromptLayout.for_tokenizer(lm.tokenizer, corpus.src_lang, corpus.tgt_lang)
    selected = as_heads(heads, lm.facts, layout, top_k)
    weights = heads.top_weights(top_k) if isinstance(heads, HeadSet) else None  # learned; None = plain mean
    if not selected:
        raise AlignheadsError("policy_eval needs at least one head")
    border = None
    if isinstance(heads, HeadSet) and heads.border:
        from ..heads.border import BorderModel

        border = BorderModel.from_dict(heads.border, "head set: border")
    pairs = list(corpus)[:limit] if limit else list(corpus)
    rho = border.rho if border is not None else length_ratio(corpus)
    read = selected + (list(border.heads) if border is not None else [])
    t0 = time.perf_counter()
    data = [_oracle_pair(lm, layout, p, read, show_future, pending)
            for p in tqdm(pairs, desc="policy-eval", unit="pair", disable=not progress)]
    out: dict[str, Any] = {
        "model": lm.facts.model_id,
        "corpus": corpus.name,
        "src_lang": corpus.src_lang,
        "tgt_lang": corpus.tgt_lang,
        "n_pairs": len(pairs),
        "heads": [str(h) for h in selected],
        "head_weights": weights,
        "show_future": show_future,
        "pending": pending,
        # ρ̂ of the causal positional rule: the border's (its calibration pairs) or, without one, the evaluated
        # corpus's own mean length ratio (then it knows a little of the test set)
        "causal_rho": rho, "causal_rho_from": "calibration" if border is not None else "evaluated corpus",
        "seconds": round(time.perf_counter() - t0, 3),
    }
    runs = [{"config": asdict(c), **_oracle_stats(data, c, weights, rho, len(selected))} for c in cfgs]
    if border is not None:
        out["learned_border"] = _border_stats(data, border, len(selected))
    if cfg is None or isinstance(cfg, AlignAttConfig):
        return {**out, **runs[0]}
    return {**out, "runs": runs}
