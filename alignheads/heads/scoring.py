"""Score every attention head as a word aligner, on teacher-forced prompts in the run-time layout.

`score_heads(lm, corpus)` is the toolkit's `detect_head`: it returns one row per
(layer, head, query kind) with

- `ts`: the Translation Score of "Token Alignment Heads" as AlignAtt4LLM uses it: at each
  target token with a gold-aligned source token, the argmax over the whole sequence hits a
  gold-aligned source token; per-sentence hit rate, averaged over sentences;
- `source_acc`: the same with the argmax restricted to the source span;
- `gold_mass`: attention mass on the gold-aligned source tokens (per token, per sentence);
- `aer`, `precision`, `recall`: of the word alignment the head induces (each target word ->
  argmax source word, attention summed over a word's tokens), against sure/possible gold;
- `ts_a4l`: the TS exactly as the AlignAtt4LLM detection script defines it ("paper_translation_score_argmax"),
  computed independently: target tokens whose raw tokenizer offsets overlap a linked target word, gold =
  tokens overlapping the characters of its linked source words, every link counted (possible too);

and the same numbers for two baselines: a positional (diagonal) aligner and the mean of all heads.
Query kinds: `own` reads the row at the target token itself, `emit` the row one position
earlier (the position whose output produces the token, i.e. what a decoder sees while drafting).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..base.errors import AlignheadsError
from ..base.metrics import aer_metrics, alignment_counts, diagonal_words
from ..corpus.pairs import Corpus, SentencePair
from ..model.attention import pool_source_words, replay_rows
from ..model.capture import AttentionCapture
from ..model.kvcache import PrefixCache
from ..model.loader import LoadedModel, broken_weights_hint
from ..model.prompts import PromptLayout, RenderedPrompt, render
from .headset import Head, HeadLike

QUERIES = ("own", "emit")
BASELINES = ("diagonal", "mean_heads")
# Per-pair contribution columns; all are sums, so corpora and shards combine by addition.
_COLS = ("ts", "source_acc", "gold_mass", "scored", "n_tokens", "a_s", "a_p", "a_n", "s_n", "ts_a4l", "scored_a4l")
# Peak memory of one pair over its attention rows (4 bytes x heads x query positions x tokens): measured
# 4.2-4.7 on tiny Gemma-3 pairs of 100-400 words (copies per query kind, masks, pooling temporaries).
_MEMORY_FACTOR = 5


class ScoringError(AlignheadsError):
    """Scoring cannot give a meaningful result: nothing to score, a pair too long, NaN attention."""


@dataclass(frozen=True)
class ScoreConfig:
    """What to score and how."""

    queries: tuple[str, ...] = QUERIES
    use_possible: bool = True  # possible links count as gold for ts/source_acc/gold_mass
    limit: int | None = None
    seed: int = 0  # shuffles pairs before `limit` when nonzero (0 keeps file order)
    progress: bool = True
    max_tokens: int | None = None  # longest teacher-forced prompt; None: the model's max_position_embeddings
    skip_long: bool = False  # skip pairs that are too long (with a warning) instead of failing

    def __post_init__(self):
        if self.limit is not None and self.limit < 1:
            raise ScoringError(f"limit must be at least 1 pair, got {self.limit}")
        if not self.queries or set(self.queries) - set(QUERIES):
            raise ScoringError(f"queries must be among {', '.join(QUERIES)}, got {', '.join(self.queries) or 'none'}")


@dataclass
class PairAttention:
    """Word-level attention of every head on one pair: (query, layer, head, tgt word, src word)."""

    pair_id: str
    words: np.ndarray  # float32 [Q, L, H, n_tgt, n_src], attention summed over each source word's tokens
    diagonal: np.ndarray  # int [n_tgt], the positional baseline's source word per target word


@dataclass
class HeadScores:
    """Result of `score_heads`: per-head scores, per-pair contributions (for splits) and word maps."""

    table: pd.DataFrame  # one row per (query, layer, head) plus baseline rows
    contributions: np.ndarray  # float64 [n_pairs, Q * L * H + 2 * Q, len(_COLS)]
    pair_ids: list[str]
    n_layers: int
    n_heads: int
    queries: tuple[str, ...]
    word_attention: list[PairAttention] = field(default_factory=list)
    shards: list[list[str]] = field(default_factory=list)  # pair ids each process scored (one list per rank)
    readiness: Any = None  # alignheads.heads.readiness.Readiness, when scored in the prefix condition too

    @property
    def heads(self) -> pd.DataFrame:
        """Rows of real heads only (no baselines)."""
        return self.table[self.table["kind"] == "head"].reset_index(drop=True)

    @property
    def baselines(self) -> pd.DataFrame:
        return self.table[self.table["kind"] != "head"].reset_index(drop=True)

    def matrix(self, column: str = "ts", query: str = "own") -> np.ndarray:
        """The `[layers × heads]` view of one score column."""
        h = self.heads[self.heads["query"] == query]
        m = np.full((self.n_layers, self.n_heads), np.nan)
        m[h["layer"].to_numpy(), h["head"].to_numpy()] = h[column].to_numpy()
        return m

    def pair_heads(self, pair_index: int, heads: Sequence[HeadLike]) -> np.ndarray:
        """Word-level attention of `heads` on scored pair `pair_index`: [heads, tgt words, src words] (for
        `combine_heads`); bad indices, heads or query kinds raise a clear error."""
        if not 0 <= pair_index < len(self.word_attention):
            raise AlignheadsError(f"pair index {pair_index} out of range: {len(self.word_attention)} pairs were scored")
        hs = [Head.parse(h) for h in heads]
        if not hs:
            raise AlignheadsError("no heads given")
        for h in hs:
            if h.query not in self.queries:
                raise AlignheadsError(f"head {h}: query {h.query!r} was not scored (have {self.queries})")
            if not (0 <= h.layer < self.n_layers and 0 <= h.head < self.n_heads):
                raise AlignheadsError(f"head {h} outside {self.n_layers} layers x {self.n_heads} heads")
        words = self.word_attention[pair_index].words
        return np.stack([words[self.queries.index(h.query), h.layer, h.head] for h in hs])

    def subset(self, rows: Sequence[int]) -> pd.DataFrame:
        """The score table recomputed on a subset of pairs (by index), e.g. a half-split."""
        return _table(self.contributions[list(rows)].sum(0), self.n_layers, self.n_heads, self.queries)


def _gold_sources(pair: SentencePair, use_possible: bool) -> dict[int, set[int]]:
    links = pair.possible if use_possible else pair.sure
    out: dict[int, set[int]] = {}
    for s, t in links:
        out.setdefault(t, set()).add(s)
    return out


def teacher_forced_prompt(lm: LoadedModel, layout: PromptLayout, pair: SentencePair) -> RenderedPrompt:
    """The run-time prompt with the reference target forced after it."""
    return render(layout, lm.tokenizer, pair.src_words, target_words=pair.tgt_words)


def prompt_head_ids(lm: LoadedModel, layout: PromptLayout) -> list[int]:
    """Token ids every prompt of `layout` starts with: the text before the source (system text / few-shot
    block), minus its last token, which may merge with the source's first characters."""
    head, start = layout.head_text(lm.tokenizer, "")
    return lm.tokenizer(head[:start], add_special_tokens=False)["input_ids"][:-1]


def _decoder(model):
    """The decoder stack without the output projection (scoring needs no logits)."""
    return model.get_decoder() if hasattr(model, "get_decoder") else model.model


@torch.no_grad()
def pair_rows(lm: LoadedModel, r: RenderedPrompt, positions: Sequence[int], layers: Iterable[int] | None = None,
              prefix_cache: PrefixCache | None = None):
    """Attention rows of all heads at `positions`: float32 [L, H, n, T] (one forward, capture + replay).

    With a `PrefixCache`, the layout's fixed prompt head is not recomputed.
    """
    layers = list(range(lm.facts.num_layers)) if layers is None else list(layers)
    with AttentionCapture(lm.model, layers, q_from=min(positions)) as cap:
        if prefix_cache is None:
            _decoder(lm.model)(input_ids=torch.tensor([r.input_ids], device=lm.device))
        else:
            prefix_cache.run(_decoder(lm.model), r.input_ids, keep_from=min(positions))
    return torch.stack([replay_rows(cap, layer, positions=positions) for layer in layers]).cpu()


def _token_targets(r: RenderedPrompt, gold: dict[int, set[int]]) -> tuple[list[int], list[list[int]]]:
    """Target token positions that have gold-aligned source tokens, and those source token positions."""
    by_token: dict[int, set[int]] = {}
    for w, toks in enumerate(r.tgt_tokens):
        for t in toks:
            by_token.setdefault(t, set()).update(gold.get(w, ()))
    tokens, sources = [], []
    for t in sorted(by_token):
        src_tok = sorted({p for s in by_token[t] for p in r.src_tokens[s]})
        if src_tok:
            tokens.append(t)
            sources.append(src_tok)
    return tokens, sources


def _overlapping(offsets: Sequence[tuple[int, int]], lo: int, hi: int, start: int, end: int) -> list[int]:
    return [t for t in range(start, end) if offsets[t][0] < hi and offsets[t][1] > lo]


def a4l_token_targets(r: RenderedPrompt, pair: SentencePair) -> tuple[list[int], list[list[int]]]:
    """AlignAtt4LLM's TS gold: target tokens whose raw offsets overlap a linked target word, each with the source
    tokens overlapping the characters of the source words linked to it (all links, sure or possible)."""
    s0, s1 = r.src_token_span
    by_token: dict[int, set[int]] = {}
    for i, j in pair.possible:
        src = _overlapping(r.offsets, *r.src_chars[i], s0, s1)
        for t in _overlapping(r.offsets, *r.tgt_chars[j], r.target_start, len(r.offsets)):
            by_token.setdefault(t, set()).update(src)
    tokens = sorted(t for t, src in by_token.items() if src)
    return tokens, [sorted(by_token[t]) for t in tokens]


def _diagonal_rows(r: RenderedPrompt, tokens: Sequence[int], T: int) -> torch.Tensor:
    """One-hot rows of the positional baseline: relative target position -> same relative source position."""
    t0, t1 = min(min(w) for w in r.tgt_tokens), max(max(w) for w in r.tgt_tokens)
    s0, s1 = r.src_token_span[0], r.src_token_span[1] - 1
    rows = torch.zeros(len(tokens), T)
    for i, t in enumerate(tokens):
        rel = (t - t0) / max(1, t1 - t0)
        rows[i, s0 + round(rel * (s1 - s0))] = 1.0
    return rows


def _token_contrib(rows: torch.Tensor, tokens_src: list[list[int]], src_span: tuple[int, int]) -> np.ndarray:
    """Per virtual head [K]: ts rate, source_acc rate, gold mass (rows: [K, n_tok, T])."""
    K, n, T = rows.shape
    gold = torch.zeros(n, T, dtype=torch.bool)
    for i, src in enumerate(tokens_src):
        gold[i, src] = True
    arg = rows.argmax(-1)  # [K, n]
    ts = gold.gather(1, arg.T).T.float().mean(-1)
    src_arg = rows[..., src_span[0] : src_span[1]].argmax(-1) + src_span[0]
    sacc = gold.gather(1, src_arg.T).T.float().mean(-1)
    mass = (rows * gold).sum(-1).mean(-1)
    return torch.stack([ts, sacc, mass], -1).double().numpy()


def score_pair(lm: LoadedModel, layout: PromptLayout, pair: SentencePair, cfg: ScoreConfig,
               prefix_cache: PrefixCache | None = None):
    """Contributions [Q*L*H + 2*Q, len(_COLS)] of one pair, and its word-level attention maps."""
    r = teacher_forced_prompt(lm, layout, pair)
    tokens, tokens_src = _token_targets(r, _gold_sources(pair, cfg.use_possible))
    a4l_tokens, a4l_src = a4l_token_targets(r, pair)
    word_first = [min(toks) for toks in r.tgt_tokens]
    L, H = lm.facts.num_layers, lm.facts.num_heads
    n_tgt, n_src = len(pair.tgt_words), len(pair.src_words)
    diag_words = diagonal_words(n_src, n_tgt)
    plan = {}
    for q in cfg.queries:
        shift = 1 if q == "emit" else 0
        plan[q] = ([t - shift for t in tokens], [t - shift for t in word_first], [t - shift for t in a4l_tokens])
    positions = sorted({p for rows_at in plan.values() for pos in rows_at for p in pos})
    index = {p: i for i, p in enumerate(positions)}
    rows = pair_rows(lm, r, positions, prefix_cache=prefix_cache)  # [L, H, n, T], one forward for all queries
    _check_finite(rows, lm, pair.id)
    T = rows.shape[-1]
    flat = rows.reshape(L * H, len(positions), T)
    contrib, words = [], []
    for q in cfg.queries:
        tok_pos, word_pos, a4l_pos = plan[q]
        virtual = torch.cat([flat, _diag_and_mean(flat, r, tokens, tok_pos, index, T)], 0)  # [L*H + 2, n, T]
        c = np.zeros((virtual.shape[0], len(_COLS)))
        if tokens:
            tok_rows = virtual[:, [index[p] for p in tok_pos]]
            c[:, 0:3] = _token_contrib(tok_rows, tokens_src, r.src_token_span)
            c[:, 3], c[:, 4] = 1.0, len(tokens)
        if a4l_tokens:
            c[:, 9] = _token_contrib(virtual[:, [index[p] for p in a4l_pos]], a4l_src, r.src_token_span)[:, 0]
            c[:, 10] = 1.0
        w = pool_source_words(virtual[:, [index[p] for p in word_pos]], r.src_tokens).numpy()  # [K, n_tgt, n_src]
        w[-2] = np.eye(n_src, dtype=np.float32)[diag_words]  # the diagonal aligns words positionally
        for k in range(virtual.shape[0]):
            pred = zip(w[k].argmax(-1).tolist(), range(n_tgt), strict=True)
            c[k, 5:9] = alignment_counts(pred, pair)
        contrib.append(c)
        words.append(w[: L * H].reshape(L, H, n_tgt, n_src))
    # order: all real heads of all queries, then the baselines of all queries
    heads = [c[: L * H] for c in contrib]
    bases = [c[L * H :] for c in contrib]
    return np.concatenate(heads + bases, 0), PairAttention(pair.id, np.stack(words), diag_words)


def _check_finite(rows: torch.Tensor, lm: LoadedModel, pair_id: str) -> None:
    """NaN/inf attention means broken weights (a corrupt file, an overflowing dtype): stop, never score it."""
    bad = ~torch.isfinite(rows).flatten(1).all(-1)  # [L]
    if bool(bad.any()):
        layers = bad.nonzero().flatten().tolist()
        raise ScoringError(f"pair {pair_id}: attention of {lm.facts.model_id} is NaN or infinite in layer(s) "
                           f"{layers}: {broken_weights_hint(lm)}")


def _diag_and_mean(flat, r, tokens, tok_pos, index, T) -> torch.Tensor:
    """Rows of the two baselines at the same positions as `flat`: diagonal one-hot, mean of all heads."""
    diag = torch.zeros(flat.shape[1], T)
    if tokens:
        diag[[index[p] for p in tok_pos]] = _diagonal_rows(r, tokens, T)
    return torch.stack([diag, flat.mean(0)])


def _table(total: np.ndarray, L: int, H: int, queries: Sequence[str]) -> pd.DataFrame:
    """Score table from summed contributions."""
    rows = []
    for qi, q in enumerate(queries):
        for layer in range(L):
            for head in range(H):
                rows.append(("head", q, layer, head, total[qi * L * H + layer * H + head]))
    base0 = len(queries) * L * H
    for qi, q in enumerate(queries):
        for bi, name in enumerate(BASELINES):
            rows.append((name, q, -1, -1, total[base0 + qi * len(BASELINES) + bi]))
    recs = []
    for kind, q, layer, head, c in rows:
        d = dict(zip(_COLS, c, strict=True))
        n = max(d["scored"], 1.0)
        recs.append({
            "kind": kind, "query": q, "layer": layer, "head": head,
            "ts": d["ts"] / n, "source_acc": d["source_acc"] / n, "gold_mass": d["gold_mass"] / n,
            "ts_a4l": d["ts_a4l"] / max(d["scored_a4l"], 1.0),
            **aer_metrics((d["a_s"], d["a_p"], d["a_n"], d["s_n"])),
            "n_pairs": int(d["scored"]), "n_tokens": int(d["n_tokens"]),
        })
    return pd.DataFrame.from_records(recs)


def select_pairs(corpus: Corpus, cfg: ScoreConfig) -> list[int]:
    """Indices of the pairs to score: all, or `limit` of them (seeded shuffle when seed != 0)."""
    idx = list(range(len(corpus)))
    if cfg.seed:
        np.random.default_rng(cfg.seed).shuffle(idx)
    return idx[: cfg.limit] if cfg.limit is not None else idx


def _free_bytes(device: torch.device) -> int | None:
    """Memory free for one more allocation on `device` (Linux MemAvailable on CPU), or None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def too_long(lm: LoadedModel, layout: PromptLayout, corpus: Corpus, indices: Sequence[int],
             max_tokens: int | None = None) -> dict[int, str]:
    """The pairs (index -> why) whose teacher-forced prompt exceeds the model's positions or free memory."""
    limit = max_tokens or getattr(lm.model.config.get_text_config(), "max_position_embeddings", None)
    free = _free_bytes(lm.device)
    rank, world = _world()
    if world > 1 and free is not None:  # every rank must skip the same pairs
        gathered: list = [None] * world
        torch.distributed.all_gather_object(gathered, free)
        free = min(gathered)
    heads = lm.facts.num_layers * lm.facts.num_heads
    out = {}
    for i in indices:
        r = teacher_forced_prompt(lm, layout, corpus[i])
        T, n = len(r.input_ids), sum(map(len, r.tgt_tokens)) + 1
        need = _MEMORY_FACTOR * 4 * heads * n * T
        if limit and T > limit:
            out[i] = f"{T} tokens, more than the {limit} positions of {lm.facts.model_id}"
        elif free is not None and need > free:
            out[i] = f"{T} tokens need about {need / 2**30:.1f} GiB for attention rows, {free / 2**30:.1f} GiB are free"
    return out


def _world() -> tuple[int, int]:
    """(rank, world size) when running under torch.distributed (e.g. torchrun), else (0, 1)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def score_heads(
    lm: LoadedModel,
    corpus: Corpus,
    layout: PromptLayout | None = None,
    config: ScoreConfig | None = None,
    *,
    indices: Sequence[int] | None = None,
) -> HeadScores:
    """Score every head of `lm` on `corpus` (teacher-forced, run-time layout); see the module docstring.

    Under torch.distributed the pairs are sharded across ranks and every rank returns the same,
    complete result (contributions are summed in pair order, so it equals a single-process run).
    """
    cfg = config or ScoreConfig()
    layout = layout or PromptLayout.for_tokenizer(lm.tokenizer, corpus.src_lang, corpus.tgt_lang)
    idx = list(indices) if indices is not None else select_pairs(corpus, cfg)
    long = too_long(lm, layout, corpus, idx, cfg.max_tokens)
    if long:
        where = corpus.name or ", ".join(corpus.sources) or "the corpus"
        lines = [f"pair {corpus[i].id} of {where}: {why}" for i, why in long.items()]
        if not cfg.skip_long:
            more = f" (and {len(lines) - 5} more)" if len(lines) > 5 else ""
            raise ScoringError("too long to score: " + "; ".join(lines[:5]) + more
                               + ". Split such pairs, or skip them (--skip-long, ScoreConfig(skip_long=True))")
        warnings.warn(f"skipping {len(long)} pair(s) too long to score: " + "; ".join(lines), stacklevel=2)
        idx = [i for i in idx if i not in long]
    if not idx:
        raise ScoringError(f"no sentence pairs to score: {corpus.name or 'the corpus'} "
                           f"({', '.join(corpus.sources) or 'in memory'}) has {len(corpus)} pair(s)"
                           + (", none short enough" if long else ""))
    rank, world = _world()
    mine = idx[rank::world]
    results = {}
    prefix = PrefixCache(lm.model, anchor=prompt_head_ids(lm, layout))  # computed once, reused by every pair
    for i in tqdm(mine, desc="scoring heads", unit="pair", disable=not cfg.progress or rank != 0):
        results[i] = score_pair(lm, layout, corpus[i], cfg, prefix)
    shards = [[corpus[i].id for i in mine]]
    if world > 1:  # pairs were sharded across ranks: gather, then sum in the single-process order
        gathered: list = [None] * world
        torch.distributed.all_gather_object(gathered, results)
        results = {i: r for part in gathered for i, r in part.items()}
        shards = [[corpus[i].id for i in part] for part in gathered]
    contribs = [results[i][0] for i in idx]
    words = [results[i][1] for i in idx]
    L, H = lm.facts.num_layers, lm.facts.num_heads
    contributions = np.stack(contribs)
    table = _table(contributions.sum(0), L, H, cfg.queries)
    nan = table[table[["ts", "source_acc", "gold_mass", "aer"]].isna().any(axis=1)]
    if len(nan):
        raise ScoringError(f"{len(nan)} score row(s) are NaN (first: {nan.iloc[0].to_dict()}); the model or the "
                           "data is broken (for the embedded model: `alignheads prepare --force`)")
    table["kv_shared"] = table["layer"].isin(list(lm.facts.kv_shared))
    return HeadScores(table, contributions, [corpus[i].id for i in idx], L, H, tuple(cfg.queries), words, shards)


@torch.no_grad()
def reference_token_scores(lm: LoadedModel, layout: PromptLayout, pair: SentencePair,
                           queries: Sequence[str] = QUERIES, use_possible: bool = True,
                           full_model: bool = True) -> np.ndarray:
    """The reference way, for tests and benchmarks: eager `output_attentions=True` on the full causal LM
    (as the authors' head-detection script does; `full_model=False`: on the decoder without the output
    layer, the depth `score_heads` runs at), then per-head ts / source_acc / gold_mass of one pair,
    [Q, L, H, 3]. `score_heads` must agree with it."""
    r = teacher_forced_prompt(lm, layout, pair)
    tokens, tokens_src = _token_targets(r, _gold_sources(pair, use_possible))
    model = lm.model
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        run = model if full_model else _decoder(model)
        out = run(torch.tensor([r.input_ids], device=lm.device), output_attentions=True)
    finally:
        model.set_attn_implementation(previous)
    L, H = lm.facts.num_layers, lm.facts.num_heads
    result = np.zeros((len(queries), L, H, 3))
    for qi, q in enumerate(queries):
        if not tokens:
            continue
        shift = 1 if q == "emit" else 0
        rows = torch.stack([a[0][:, [t - shift for t in tokens]] for a in out.attentions]).float().cpu()
        n, T = rows.shape[-2:]
        result[qi] = _token_contrib(rows.reshape(L * H, n, T), tokens_src, r.src_token_span).reshape(L, H, 3)
    return result


def combine_scores(parts: Sequence[tuple[HeadScores, Corpus]]) -> tuple[HeadScores, Corpus]:
    """Several scored corpora (same model, same queries) as one: pair ids get a `<part>:` prefix to stay apart."""
    first = parts[0][0]
    if any((s.n_layers, s.n_heads, s.queries) != (first.n_layers, first.n_heads, first.queries) for s, _ in parts):
        raise ValueError("scores to combine come from different models or query positions")
    contributions = np.concatenate([s.contributions for s, _ in parts])
    table = _table(contributions.sum(0), first.n_layers, first.n_heads, first.queries)
    if "kv_shared" in first.table:
        table["kv_shared"] = table["layer"].isin(first.table.loc[first.table["kv_shared"], "layer"].unique())
    ids = [f"{k}:{pid}" for k, (s, _) in enumerate(parts) for pid in s.pair_ids]
    words = [replace(w, pair_id=f"{k}:{w.pair_id}") for k, (s, _) in enumerate(parts) for w in s.word_attention]
    corpus = Corpus([replace(p, id=f"{k}:{p.id}") for k, (_, c) in enumerate(parts) for p in c],
                    parts[0][1].src_lang, parts[0][1].tgt_lang, "+".join(c.name for _, c in parts))
    return HeadScores(table, contributions, ids, first.n_layers, first.n_heads, first.queries, words), corpus
