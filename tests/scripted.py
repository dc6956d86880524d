"""Test-only models and tokenizers for the translation mechanism (issue 11).

- `sentencepiece_tokenizer()`: a BPE trained in memory on Italian, French and German text with
  SentencePiece-style pre-tokenisation (split on spaces only), so, like SentencePiece models, it merges
  across apostrophes and glued punctuation: "dell'isola" or ")." give tokens shared by two words.
- `scripted_model(script, ending)`: a real tiny Gemma-3 whose attention and MLP outputs are zeroed and
  whose output layer is a fixed, biased table, so greedy decoding drafts `script` from any context and
  then ends (end-of-turn, newline, or running on into the script again). Its q/k — the attention the
  policies read — are untouched.
"""

from __future__ import annotations

import string
from functools import lru_cache

import torch

from alignheads.model.loader import LoadedModel, model_facts
from alignheads.model.tiny import SPECIAL_TOKENS, TINY_CHAT_TEMPLATE, tiny_gemma3, tiny_tokenizer

# Written for these tests: elisions, glued punctuation and compounds, repeated so that BPE merges them.
_SP_TEXT = """\
Il lago più grande dell'isola è quello dell'altopiano, e l'isola ha l'aspetto di un'altra terra.
L'obiettivo dell'agenda è l'inclusione (FSE). Nell'insieme, l'intervento dell'Unione (FSE).
C'est l'homme qu'il aime, et l'homme qu'elle attend ; aujourd'hui c'est l'heure (BMBF).
Qu'il vienne, l'avion d'Air France arrive à l'heure (BMBF), et c'est l'essentiel.
Die Bundesregierung (BMBF). Das Bundesverfassungsgericht (BVerfG). Die Forschungsministerin der Bundesregierung.
Das Bundesverfassungsgericht entscheidet (BVerfG), die Bundesregierung folgt dem Bundesverfassungsgericht.
"""


@lru_cache(maxsize=1)
def sentencepiece_tokenizer():
    """BPE on space-split text (SentencePiece-like "▁" pieces) with offsets and the tiny chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    alphabet = sorted(set(string.printable.strip() + "▁àèéìòùÀÈÉäöüÄÖÜßç«»’"))
    trainer = trainers.BpeTrainer(vocab_size=420, special_tokens=SPECIAL_TOKENS, initial_alphabet=alphabet,
                                  show_progress=False)
    tok.train_from_iterator(_SP_TEXT.splitlines() * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", additional_special_tokens=["<start_of_turn>", "<end_of_turn>"],
                                   chat_template=TINY_CHAT_TEMPLATE)


def tiny_model(tokenizer=None, seed: int = 0, name: str = "tiny-sp") -> LoadedModel:
    """A tiny random Gemma-3 over `tokenizer` (default: the SentencePiece-like one)."""
    model, tok = tiny_gemma3(seed=seed, tokenizer=tokenizer or sentencepiece_tokenizer())
    return LoadedModel(model, tok, model_facts(model, tok, name), name)


def scripted_model(script: str = " Il modello.", ending: str = "eos", tokenizer=None,
                   runner_up: tuple[str, str] | None = None) -> LoadedModel:
    """Tiny Gemma-3 that greedily drafts `script` from any context, then ends as `ending` says:
    "eos" (end-of-turn), "newline", or "run_on" (the script again). `runner_up` (after, token): from the script's
    token `after` the single token `token` is the second choice (80 against 100), and `ending` follows it."""
    tok = tokenizer or tiny_tokenizer()
    model, _ = tiny_gemma3(seed=1, tokenizer=tok)
    with torch.no_grad():
        for layer in model.model.layers:  # each position's output depends on its own token only
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        chain = tok(script, add_special_tokens=False)["input_ids"]
        if len(set(chain)) != len(chain):
            raise ValueError(f"the script {script!r} repeats a token; a successor table cannot draft it")
        stop = {"eos": tok.convert_tokens_to_ids("<end_of_turn>"),
                "newline": tok("\n", add_special_tokens=False)["input_ids"][-1],
                "run_on": chain[0]}[ending]
        succ = dict(zip(chain, [*chain[1:], stop], strict=True))
        if runner_up is not None:
            (after,), (second,) = (tok(t, add_special_tokens=False)["input_ids"] for t in runner_up)
            succ[second] = stop
        vocab = torch.arange(len(tok))
        hidden = model.model(input_ids=vocab[None]).last_hidden_state[0]  # [V, d]: the state each token leaves
        inputs = list(succ)
        rows = 100.0 * torch.linalg.pinv(hidden[inputs]).T  # read exactly 100 on their own input, 0 on the others
        head = torch.nn.Linear(hidden.shape[1], len(tok), bias=True)
        head.weight.zero_()
        head.bias.zero_()
        for x, row in zip(inputs, rows, strict=True):
            head.weight[succ[x]] += row
        if runner_up is not None:
            head.weight[second] += 0.8 * rows[inputs.index(after)]
        head.bias[chain[0]] = 60.0  # from any other token: start the script
        model.lm_head = head
        expected = torch.tensor([succ.get(int(v), chain[0]) for v in vocab])
        if not torch.equal(head(hidden).argmax(-1), expected):
            raise AssertionError("the scripted table is not deterministic for this tokenizer")
    name = f"scripted-{ending}" + ("" if runner_up is None else f"-{runner_up[1]}")
    return LoadedModel(model, tok, model_facts(model, tok, name), name)


def policy_heads(policy: str, heads, lm: LoadedModel):
    """`heads` as the policy needs them: for learned-border a head set carrying a position-only learned border
    (P(ready) = σ(a − round(j)): target word j goes out once more than j source words are accessible)."""
    if policy != "learned-border":
        return heads
    from alignheads.heads.border import POSITION, BorderModel
    from alignheads.heads.headset import HeadEntry, HeadSet

    border = BorderModel([], list(POSITION), [0.0] * 5, [1.0] * 5, [0.0, 0.0, 0.0, 0.0, 4.0], -2.0, rho=1.0,
                         pending=0, variant="position")
    return HeadSet([HeadEntry(h.layer, h.head, query=h.query) for h in heads], lm.facts.model_id, "en", "de",
                   lm.facts.num_layers, lm.facts.num_heads, border=border.to_dict())
