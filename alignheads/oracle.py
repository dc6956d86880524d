"""Oracle evaluation of the AlignAtt rule alone, on gold alignments.

The reference translation is forced as the draft, the source is revealed word by word, and a target
word counts as premature when the rule lets it out before all of its gold-aligned source words are
available; over-wait is how many source words later than needed it went out. The selected heads are
compared with the mean of all heads and the positional (diagonal) baseline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from .attention import pool_source_words
from .data import Corpus, SentencePair
from .errors import AlignheadsError
from .headset import Head, HeadLike, HeadSet, as_heads
from .models import LoadedModel
from .policy import AlignAttConfig, alignatt_cut, alignatt_positions, diagonal_positions
from .prompts import PromptLayout, render


def _needed(pair: SentencePair) -> dict[int, int]:
    """Per gold-aligned target word: how many source words must be available (last aligned source word + 1)."""
    need: dict[int, int] = {}
    for s, t in pair.possible:
        need[t] = max(need.get(t, 0), s + 1)
    return need


def _emission_steps(attn_or_pos, token_word: list[int], n_words: int, n_src: int, cfg: AlignAttConfig,
                    fixed: bool, steps: Sequence[int], weights: Sequence[float] | None = None) -> list[int]:
    """When (number of accessible source words) each target word is emitted, scanning a teacher-forced draft.

    `attn_or_pos` is, per step in `steps`, the attention [heads, tokens, src] (or, with `fixed`, one array of
    positions used at every step). The draft of a step is the next `max_draft` tokens after the emitted ones.
    """
    word_tokens: dict[int, list[int]] = {}
    for t, w in enumerate(token_word):
        word_tokens.setdefault(w, []).append(t)
    for w in reversed(range(n_words)):  # a word whose tokens all serve the next word too goes out with it
        if w not in word_tokens:
            word_tokens[w] = word_tokens.get(w + 1, [len(token_word) - 1])
    emitted_at = [n_src] * n_words  # words left at the end go out with the final update
    u = 0  # first target word not emitted yet
    last_pos = None
    for k, n in enumerate(steps):
        if u >= n_words:
            break
        first = word_tokens[u][0]
        window = list(range(first, min(first + cfg.max_draft, len(token_word))))
        if fixed:
            positions = np.asarray(attn_or_pos)[window]
        else:
            positions, _ = alignatt_positions(attn_or_pos[k][:, window], cfg, weights)
        keep, _, _ = alignatt_cut(positions, n, cfg, last_pos)
        kept = set(window[:keep])
        while u < n_words and set(word_tokens[u]) <= kept:
            emitted_at[u] = n
            last_pos = int(positions[window.index(word_tokens[u][-1])])
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
    """Teacher-forced attention of one pair at every source prefix, for the oracle."""

    n_src: int
    n_tgt: int
    need: dict[int, int]
    token_word: list[int]
    steps: list[int]
    selected: list[np.ndarray]  # per step [heads, target tokens, source words]
    mean: list[np.ndarray]  # per step [1, target tokens, source words]


def _oracle_pair(lm: LoadedModel, layout: PromptLayout, pair: SentencePair, selected: list[Head],
                 show_future: bool) -> _OraclePair:
    from .scoring import pair_rows

    L, H = lm.facts.num_layers, lm.facts.num_heads
    N, M = len(pair.src_words), len(pair.tgt_words)
    steps = list(range(1, N))
    token_word: list[int] = []
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    sel_steps, mean_steps = [], []
    for n in steps:
        shown = N if show_future else n
        if shown not in cache:
            r = render(layout, lm.tokenizer, pair.src_words[:shown], target_words=pair.tgt_words)
            tokens = sorted({t for w in r.tgt_tokens for t in w})
            word_of = {t: w for w, toks in enumerate(r.tgt_tokens) for t in toks}
            if token_word and [word_of[t] for t in tokens] != token_word:
                raise AlignheadsError(f"pair {pair.id!r}: the reference tokenises differently after "
                                      f"{shown} source words; the oracle needs one target tokenisation")
            token_word = [word_of[t] for t in tokens]
            positions = sorted(set(tokens) | {t - 1 for t in tokens})
            index = {p: i for i, p in enumerate(positions)}
            rows = pair_rows(lm, r, positions)  # [L, H, n_pos, T], one forward
            words = pool_source_words(rows, r.src_tokens).numpy()  # [L, H, n_pos, S]
            own = [index[t] for t in tokens]
            emit = [index[t - 1] for t in tokens]
            sel = np.stack([words[h.layer, h.head, own if h.query == "own" else emit] for h in selected])
            mean = words[:, :, own].reshape(L * H, len(tokens), -1).mean(0, keepdims=True)
            cache[shown] = (sel, mean)
        sel_steps.append(cache[shown][0])
        mean_steps.append(cache[shown][1])
    if not token_word:  # a one-word source has no step before the final update
        token_word = [j for j in range(M)]
    return _OraclePair(N, M, _needed(pair), token_word, steps, sel_steps, mean_steps)


def _oracle_stats(data: list[_OraclePair], cfg: AlignAttConfig,
                  weights: Sequence[float] | None = None) -> dict[str, dict[str, Any]]:
    emitted: dict[str, list[list[int]]] = {"selected": [], "all_heads_mean": [], "diagonal": []}
    for d in data:
        if not d.steps:
            for v in emitted:
                emitted[v].append([d.n_src] * d.n_tgt)
            continue
        emitted["selected"].append(_emission_steps(d.selected, d.token_word, d.n_tgt, d.n_src, cfg, False, d.steps,
                                                   weights))
        emitted["all_heads_mean"].append(_emission_steps(d.mean, d.token_word, d.n_tgt, d.n_src, cfg, False, d.steps))
        diag = diagonal_positions(d.token_word, d.n_src, d.n_tgt)
        emitted["diagonal"].append(_emission_steps(diag, d.token_word, d.n_tgt, d.n_src, cfg, True, d.steps))
    needs, n_srcs = [d.need for d in data], [d.n_src for d in data]
    return {v: _variant_stats(e, needs, n_srcs) for v, e in emitted.items()}


def policy_eval(
    lm: LoadedModel,
    corpus: Corpus,
    heads: Sequence[HeadLike] | HeadSet,
    cfg: AlignAttConfig | Sequence[AlignAttConfig] | None = None,
    *,
    layout: PromptLayout | None = None,
    limit: int | None = None,
    show_future: bool = False,
    top_k: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Oracle evaluation of AlignAtt on gold alignments, for the selected heads, the all-head mean and the diagonal.

    For each pair and each source prefix n = 1 … N−1 the prompt holds the source prefix (or, with `show_future`,
    the whole source with only the first n words accessible) and the reference as the teacher-forced draft; the
    rule scans the next `max_draft` tokens after the words already emitted. A target word is premature when it is
    emitted with fewer source words available than its last gold-aligned source word needs; over-wait is how many
    source words later than needed it went out. Returns one JSON-able dict; given a list of configs, the forwards
    are shared and the dict holds one entry per config under "runs".
    """
    cfgs = [cfg or AlignAttConfig()] if cfg is None or isinstance(cfg, AlignAttConfig) else list(cfg)
    layout = layout or PromptLayout.for_tokenizer(lm.tokenizer, corpus.src_lang, corpus.tgt_lang)
    selected = as_heads(heads, lm.facts, layout, top_k)
    weights = heads.top_weights(top_k) if isinstance(heads, HeadSet) else None  # learned; None = plain mean
    if not selected:
        raise AlignheadsError("policy_eval needs at least one head")
    pairs = list(corpus)[:limit] if limit else list(corpus)
    t0 = time.perf_counter()
    data = [_oracle_pair(lm, layout, p, selected, show_future)
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
        "seconds": round(time.perf_counter() - t0, 3),
    }
    runs = [{"config": asdict(c), **_oracle_stats(data, c, weights)} for c in cfgs]
    if cfg is None or isinstance(cfg, AlignAttConfig):
        return {**out, **runs[0]}
    return {**out, "runs": runs}
