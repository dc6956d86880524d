"""The translator's settings (`AlignAttConfig`, `TranslatorConfig`) and the policy names: no torch, so that the
command line can build its parser from them at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..base.errors import AlignheadsError
from ..heads.combine import Combination

POLICY_NAMES = ("alignatt", "wait-k", "cut-last", "local-agreement", "learned-border")  # simul.policy.POLICIES


@dataclass(frozen=True)
class AlignAttConfig:
    """AlignAtt parameters: the paper's, except the border (−2; the paper's 1 is `--preset paper`). `border` may be
    ≤ 0; see the module docstring for its exact meaning and for why the default is −2."""

    border: int = -2
    rewind: int = 8  # words; 0 = off
    z_score: bool = True
    median_width: int = 7  # odd; 1 or 0 = off
    max_draft: int = 16  # draft tokens per update

    def __post_init__(self):
        if self.rewind < 0:
            raise AlignheadsError(f"rewind must be >= 0 (0 = off), got {self.rewind}")
        self.combination  # noqa: B018 (validates median_width)
        if self.max_draft < 1:
            raise AlignheadsError(f"max_draft must be >= 1, got {self.max_draft}")

    @property
    def combination(self) -> Combination:
        """How the draft's head attention is combined before the argmax (z-score, then median filter)."""
        return Combination(z_score=self.z_score, median_width=self.median_width)


@dataclass
class TranslatorConfig:
    """Translator settings; the draft length `alignatt.max_draft` applies to every policy."""

    alignatt: AlignAttConfig = field(default_factory=AlignAttConfig)
    wait_k: int = 3  # wait-k: source words before the first target unit
    border_threshold: float = 0.5  # learned border: a drafted word goes out while P(ready) >= this
    cut_last: int = 2  # cut-last-x: draft words withheld
    la_n: int = 2  # local agreement: consecutive drafts that must agree
    holdback: float = 0.0  # seconds a word must be old before it counts as accessible
    top_k: int | None = None  # heads taken from a HeadSet (its order); None = all of them
    final_max_tokens: int = 256  # length cap of the final (policy-free) translation
    # A final pass may not stop (stop token, newline) before the sentence has this many target units per source
    # word (continuing from a committed prefix that ends in ")" or a list, the model may stop at once); 0: off.
    final_min_ratio: float = 0.5
    # Before the final pass, no update commits a closing bracket the sentence's text never opened ("in tre lingue)"
    # reads as finished): the commit ends before it, as at a held sentence end; the final pass may write it.
    hold_brackets: bool = True
    # A final pass that would add nothing, though text was last committed (or none was) before the last source
    # word was accessible and the source ends with a sentence-final mark, drafts again without stop tokens until it
    # writes such a mark (at most 8 tokens plus 3 per word not accessible then), kept only if that brings the output
    # closer (chrF) to the model's own translation of the whole sentence: one that only ends it or invents is not.
    finish_unheard: bool = True
    reuse_cache: bool = True
    stop_at_newline: bool = True  # a newline ends a draft (completion layouts go on with the next example)
    # The prompt's own target label ("Italian:") ends a draft and is dropped from it: the model has left the
    # translation (it wrote "seguendo l'Italian:" and stopped), and nothing after it is translation.
    stop_at_label: bool = True
    context_limit: int | None = None  # tokens; None = the model's max_position_embeddings
    memo_size: int = 0  # >0: remember drafts per prompt (sweeps over policy parameters share them)
    guess: bool = True  # verify the previous draft's unsent tokens in the prefill forward (same output, fewer steps)
    prefill_chunk: int | None = None  # feed a prompt in forwards of at most this many tokens (a server interleaves)


__all__ = ["POLICY_NAMES", "AlignAttConfig", "TranslatorConfig"]
