"""Mutation checks: break the code on purpose, one small patch at a time, and expect the guarding test to fail.

Each mutant replaces one exact snippet of one file (the snippet must occur exactly once, so a mutant that no longer
applies is reported, not silently skipped), runs the test that guards it, and restores the file whatever happens.
A mutant is *caught* when its test fails; `make mutants` exits non-zero when any mutant survives, when one no
longer applies, or when a guarding test fails on the unmutated code.

    python tests/mutants/run.py            # all of them
    python tests/mutants/run.py --list     # names, files, guarding tests
    python tests/mutants/run.py --show NAME  # the patch as a unified diff
"""

from __future__ import annotations

import argparse
import difflib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutant:
    """One deliberate bug: in `path`, `old` (exactly once) becomes `new`; `test` (pytest ids) must then fail."""

    name: str
    path: str
    old: str
    new: str
    test: tuple[str, ...]


MUTANTS = [
    Mutant("alignatt-emits-the-stopping-token", "alignheads/simul/policy.py",
           "cfg, state.get(\"last_position\"))\n",
           "cfg, state.get(\"last_position\"))\n"
           "        keep = min(keep + 1, view.n_tokens) if stop is not None else keep\n",
           ("tests/simul/test_policy.py::test_alignatt_decide_never_emits_the_stopping_token",)),
    Mutant("emit-heads-read-their-own-row", "alignheads/simul/translator.py",
           'first = P if query == "own" else P - 1', "first = P",
           ("tests/simul/test_translator.py::test_draft_attention_is_read_at_each_heads_query_row",)),
    Mutant("bootstrap-against-one-side-of-the-interpolation", "alignheads/simul/significance.py",
           "diffs = sampled[0] - ((1 - w) * sampled[1] + w * sampled[2])", "diffs = sampled[0] - sampled[1]",
           ("tests/simul/test_significance.py::test_every_resample_scores_both_bracketing_settings",)),
    Mutant("server-answers-a-resent-seq", "alignheads/serve/server.py",
           "upd.seq <= self.answered_seq", "upd.seq < self.answered_seq",
           ("tests/serve/test_serve.py::test_a_partial_not_newer_than_an_answered_one_is_ignored",)),
    Mutant("server-reuses-a-final-without-the-clients-prefix", "alignheads/serve/server.py",
           "if cached is not None and cached.startswith(self.translator.target):", "if cached is not None:",
           ("tests/serve/test_serve.py::test_a_recent_final_is_reused_only_when_it_continues_the_clients_prefix",)),
    Mutant("server-append-only-guard-removed", "alignheads/serve/server.py",
           "        if not text.startswith(self.emitted):\n"
           "            raise RuntimeError(f\"append-only output broken: {self.emitted!r} -> {text!r}\")\n", "",
           ("tests/serve/test_serve.py::test_append_only_guard_refuses_output_that_rewrites_what_was_sent",)),
    Mutant("cascade-vad-gate-off", "alignheads/speech/cascade.py",
           "            if not self._vad.speech_in(since, self.now + 1.0):\n", "            if False:\n",
           ("tests/speech/test_cascade.py::test_the_cascade_vad_gate_keeps_silence_from_the_recogniser",)),
    Mutant("capture-calls-sdpa-under-eager", "alignheads/model/capture.py",
           "            return sys.modules[type(module).__module__].eager_attention_forward(module, *args, **kwargs)",
           "            return ALL_ATTENTION_FUNCTIONS[\"sdpa\"](module, *args, **kwargs)",
           ("tests/model/test_capture.py::test_capture_under_eager_runs_the_eager_kernel",)),
    Mutant("guess-rejected-keys-stay-in-the-capture", "alignheads/simul/translator.py",
           "                capture.truncate(fed)\n", "                pass\n",
           ("tests/simul/test_translator.py::test_a_guess_accepted_fully_partly_or_not_at_all_drafts_the_same",)),
    Mutant("guess-rejected-tokens-stay-in-the-cache", "alignheads/simul/translator.py",
           "            rollback(self._cache, fed)\n", "",
           ("tests/simul/test_translator.py::test_a_guess_accepted_fully_partly_or_not_at_all_drafts_the_same",)),
    Mutant("batched-row-keys-include-the-padding", "alignheads/model/batching.py",
           "start = max(0, end - (int(self.positions[b, 0]) + n))", "start = 0",
           ("tests/model/test_batching.py::test_a_batched_forward_gives_every_row_what_it_gets_alone",)),
    Mutant("batched-rows-see-the-left-padding", "alignheads/model/batching.py",
           "mask[b, longest - s.length:longest + len(s.tokens)] = 1", "mask[b, :] = 1",
           ("tests/model/test_batching.py::test_a_batched_forward_gives_every_row_what_it_gets_alone",)),
    Mutant("identical-outputs-read-as-significant", "alignheads/simul/significance.py",
           "abs(sys_score - base))) if absolute.any() else 1.0", "abs(sys_score - base)))",
           ("tests/simul/test_significance.py::test_identical_outputs_are_not_a_significant_difference",)),
    Mutant("unopened-bracket-committed", "alignheads/simul/translator.py",
           "            if self.config.hold_brackets:\n", "            if False:\n",
           ("tests/simul/test_never_early.py::test_a_closing_bracket_nothing_opened_waits_for_the_final_pass",)),
    Mutant("unopened-closer-forgets-the-committed-text", "alignheads/base/sentences.py",
           "enumerate(before + text)", "enumerate(\" \" * len(before) + text)",
           ("tests/simul/test_never_early.py::test_unopened_closer_finds_a_closing_bracket_nothing_opened",)),
    Mutant("draft-keeps-the-prompt-label", "alignheads/simul/translator.py",
           "            if not text.endswith(self._label):\n                return False\n",
           "            if True:\n                return False\n",
           ("tests/simul/test_never_early.py::test_a_draft_that_writes_the_prompt_label_ends_before_it",)),
    Mutant("final-pass-keeps-what-translates-nothing", "alignheads/simul/translator.py",
           "return again if moves_toward(self.target, self._text(again), offline) else None",
           "return again",
           ("tests/simul/test_never_early.py::test_a_forced_final_pass_that_translates_nothing_more_is_dropped",)),
    Mutant("final-pass-never-drafts-again", "alignheads/simul/translator.py",
           "            if self._stops_unheard(words, draft):", "            if False:",
           ("tests/simul/test_never_early.py::test_a_forced_final_pass_that_translates_nothing_more_is_dropped",)),
    Mutant("final-pass-never-keeps-its-second-draft", "alignheads/simul/translator.py",
           "                draft = draft if again is None else again\n", "",
           ("tests/simul/test_never_early.py::test_a_forced_final_continuation_judged_closer_is_appended",)),
    Mutant("memo-charges-only-the-kept-draft", "alignheads/simul/translator.py",
           "        compute = time.perf_counter() - t_start + self._memo_s\n",
           "        compute = time.perf_counter() - t_start + (draft.compute_s if draft.memo_hit else 0.0)\n",
           ("tests/simul/test_never_early.py::test_every_memo_hit_of_a_final_pass_is_charged_to_its_update",)),
    Mutant("splice-takes-a-negative-index", "alignheads/simul/splice.py",
           "    if indices[0] < 0 or indices[-1] >= n:\n", "    if indices[-1] >= n:\n",
           ("tests/simul/test_splice.py::test_a_record_the_old_settings_do_not_reproduce_is_refused",)),
    Mutant("splice-trusts-the-record", "alignheads/simul/splice.py",
           "stored[\"target_units\"]):\n", "stored[\"target_units\"]) and False:\n",
           ("tests/simul/test_splice.py::test_a_record_the_old_settings_do_not_reproduce_is_refused",)),
    Mutant("splice-leaves-the-latency", "alignheads/simul/splice.py",
           "            s[m] += (sum(now) - sum(was)) / (n - scores[\"n_empty\"])\n", "            pass\n",
           ("tests/simul/test_splice.py::test_a_spliced_record_equals_a_full_rerun[False]",)),
    Mutant("splice-keeps-the-old-sentence-latency", "alignheads/simul/splice.py",
           "            lat[i] = now_lat[k]\n", "            pass\n",
           ("tests/simul/test_splice.py::test_a_spliced_record_equals_a_full_rerun[True]",)),
    Mutant("run-folder-lock-off", "alignheads/base/runfolder.py",
           "            lock.acquire(timeout=0)\n", "            pass\n",
           ("tests/base/test_runfolder.py::test_a_second_run_into_the_same_folder_is_refused",)),
    Mutant("run-folder-keeps-stale-files", "alignheads/base/runfolder.py",
           "            (self.path / name).unlink(missing_ok=True)\n", "            pass\n",
           ("tests/base/test_runfolder.py::test_a_rerun_replaces_the_previous_files_as_a_set",)),
    Mutant("screen-without-its-error-bound", "alignheads/model/outlayer.py",
           "            cand = near[approx[near] + eps >= (approx[near] - eps).max()]",
           "            cand = near[approx[near] >= approx[near].max()]",
           ("tests/model/test_outlayer.py::test_the_screened_argmax_is_the_float32_argmax",)),
    Mutant("screen-ignores-a-near-tie", "alignheads/model/outlayer.py",
           "            if len(cand) > 1 and float(exact.topk(2).values.diff().abs()) < max(",
           "            if False and (",
           ("tests/model/test_outlayer.py::test_a_near_tie_falls_back_to_the_whole_float32_layer",)),
    Mutant("screen-tie-ignores-float32-error", "alignheads/model/outlayer.py",
           "TIE, 2 * self.gamma * float(l1) * float(b.weight_max[cand].max())):", "TIE, 0.0):",
           ("tests/model/test_outlayer.py::test_a_gap_within_float32_accumulation_error_falls_back_to_the_whole_layer",)),
    Mutant("fbgemm-screen-drops-its-residual", "alignheads/model/outlayer.py",
           "            return approx, mag, residual + self.gamma * l1",
           "            return approx, mag, self.gamma * l1",
           ("tests/model/test_outlayer.py::test_a_screen_whose_weights_are_exact_rests_on_its_activation_bound",)),
    Mutant("fbgemm-grid-without-its-ends", "alignheads/model/outlayer.py",
           "        x[0, -2:] = torch.tensor(", "        x[0, -2:] = 0 * torch.tensor(",
           ("tests/model/test_outlayer.py::test_the_screened_argmax_is_the_float32_argmax",)),
    Mutant("translator-hides-a-dtype-mismatch", "alignheads/simul/translator.py",
           'if calibrated and calibrated.split("+")[0] != lm.dtype.split("+")[0]:', "if False:",
           ("tests/simul/test_translator.py::test_a_head_set_calibrated_in_another_dtype_is_stated",)),
    Mutant("drafting-without-the-model-lock", "alignheads/simul/translator.py",
           "    with tr.lm.lock:\n", "    if True:\n",
           ("tests/simul/test_translator.py::test_two_threads_drafting_on_one_model_take_turns",)),
    Mutant("pipeline-clock-ignores-recognition", "alignheads/speech/cascade.py",
           "        self._mt_clock = max(self._mt_clock, recognised) + mt_s\n",
           "        self._mt_clock = self._mt_clock + mt_s\n",
           ("tests/speech/test_cascade.py::test_overlapping_recognition_and_translation_changes_no_output",)),
    Mutant("prompt-mapping-quadratic", "alignheads/model/prompts.py",
           "        t = first\n", "        t = 0\n",
           ("tests/model/test_prompts.py::test_rendering_is_linear_in_the_source_length",)),
    Mutant("final-pass-stops-early", "alignheads/simul/translator.py",
           "if len(target_units(text, self.tgt_lang)) < min_units or (finish", "if False or (finish",
           ("tests/simul/test_never_early.py::test_a_final_pass_does_not_stop_before_its_source_is_covered",)),
    Mutant("learned-border-emits-the-doubted-word", "alignheads/simul/policy.py",
           "                keep = stop = starts[int(waiting[0])]",
           "                keep = stop = starts[int(waiting[0])] + 1",
           ("tests/heads/test_readiness.py::test_the_learned_border_policy_holds_the_first_word_it_doubts",)),
    Mutant("readiness-margin-sign", "alignheads/heads/readiness.py",
           "            margins.append(acc - att[..., j, :].argmax(-1))",
           "            margins.append(att[..., j, :].argmax(-1) - acc)",
           ("tests/heads/test_readiness.py::test_a_head_on_the_true_source_word_scores_high_and_a_recency_head_does_not",)),
    Mutant("server-bounds-unchecked", "alignheads/serve/server.py",
           "                    self.config.check(msg)\n", "",
           ("tests/serve/test_serve.py::test_an_update_over_the_word_bound_is_refused_before_the_tokenizer",)),
    Mutant("server-no-init-timeout", "alignheads/serve/server.py",
           "timeout = self.config.init_timeout_s if session is None else self.config.idle_timeout_s",
           "timeout = None if session is None else self.config.idle_timeout_s",
           ("tests/serve/test_serve.py::test_a_connection_without_init_is_closed_and_its_slot_freed",)),
    Mutant("server-any-origin", "alignheads/serve/server.py",
           "process_request=self._process_request, origins=origins, close_timeout=1)",
           "process_request=self._process_request, close_timeout=1)",
           ("tests/serve/test_serve.py::test_browser_origins_are_checked",)),
    Mutant("server-token-unchecked", "alignheads/serve/server.py",
           "            if not hmac.compare_digest(given.encode(), self.config.token.encode()):",
           "            if False:",
           ("tests/serve/test_serve.py::test_a_token_is_required_when_set",)),
    Mutant("engine-batch-rows-mixed", "alignheads/serve/engine.py",
           "for job, rows in zip(jobs, hidden, strict=True):",
           "for job, rows in zip(jobs, [hidden[0]] * len(jobs), strict=True):",
           ("tests/serve/test_serve.py::test_sessions_drafting_together_get_what_they_get_alone",)),
    Mutant("engine-long-job-runs-to-its-end", "alignheads/serve/engine.py",
           "        for job in [j for j in self._active if j.request is None]:",
           "        for job in [j for j in self._active if j.request is None][:1]:",
           ("tests/serve/test_serve.py::test_a_long_final_does_not_hold_up_another_session",
            "tests/serve/test_serve.py::test_a_maximal_frame_does_not_stall_another_session")),
    Mutant("engine-heavy-job-not-deferred", "alignheads/serve/engine.py",
           "        light = [j for j in waiting if j.service_s < self.heavy_s]",
           "        light = waiting",
           ("tests/serve/test_serve.py::test_a_heavy_job_yields_to_light_ones_and_still_advances",)),
    Mutant("cli-parser-imports-torch", "alignheads/cli/options.py",
           "from ..simul.config import POLICY_NAMES, AlignAttConfig, TranslatorConfig\n",
           "from ..simul.config import POLICY_NAMES, AlignAttConfig\nfrom ..simul.translator import TranslatorConfig\n",
           ("tests/cli/test_parser.py::test_the_parser_loads_no_torch_and_no_matplotlib",)),
    Mutant("explorer-readiness-always-offered", "alignheads/lab/explorer.py",
           "if k in self.scores.heads and self.scores.heads[k].notna().any()}", "if True}",
           ("tests/lab/test_explorer.py::test_the_prefix_view_shows_readiness_only_when_scored",)),
    Mutant("memo-key-ignores-heads", "alignheads/simul/translator.py",
           "        key = (tuple(prompt.input_ids), max_tokens, end_if_cap, min_units, finish, tuple(self.heads))\n",
           "        key = (tuple(prompt.input_ids), max_tokens, end_if_cap, min_units, finish)\n",
           ("tests/simul/test_translator.py::test_a_shared_memo_never_hands_one_head_set_the_attention_of_another",)),
    Mutant("local-agreement-counts-a-redraft", "alignheads/simul/policy.py",
           "        if history and view.n_shown == state.get(\"shown\"):\n            return 0\n", "",
           ("tests/simul/test_policy.py::test_local_agreement_counts_a_redraft_of_the_same_input_once",)),
    Mutant("serve-sigterm-not-graceful", "alignheads/cli/commands.py",
           "            loop.add_signal_handler(sig, stop.set)\n", "            pass\n",
           ("tests/serve/test_serve.py::test_sigterm_closes_the_sessions_and_ends_the_server",)),
]


def mutated(m: Mutant) -> tuple[str, str]:
    """(original text, mutated text) of the mutant's file; raises when the snippet does not occur exactly once."""
    text = (ROOT / m.path).read_text(encoding="utf-8")
    count = text.count(m.old)
    if count != 1:
        raise LookupError(f"{m.name}: the snippet occurs {count} times in {m.path} (expected once): update the mutant")
    return text, text.replace(m.old, m.new)


def pytest(tests: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)


def run(mutants: list[Mutant], timeout: float) -> int:
    """Check the guarding tests pass unmutated, then each mutant; print a table; 0 when every mutant is caught."""
    for m in mutants:
        mutated(m)  # every snippet applies before anything runs
    base = pytest(sorted({t for m in mutants for t in m.test}), timeout * len(mutants))
    if base.returncode != 0:
        print(base.stdout[-3000:], base.stderr[-2000:], sep="\n")
        print("the guarding tests fail on the unmutated code: fix that first")
        return 1
    survived = 0
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    for m in mutants:
        original, bad = mutated(m)
        path = ROOT / m.path
        t0 = time.perf_counter()
        try:
            path.write_text(bad, encoding="utf-8")
            result = pytest(list(m.test), timeout)
            caught = result.returncode != 0
        except subprocess.TimeoutExpired:
            caught = True  # a hang is a failure too
        finally:
            path.write_text(original, encoding="utf-8")
        survived += not caught
        print(f"{'caught  ' if caught else 'SURVIVED'}  {m.name:<52} {time.perf_counter() - t0:5.1f} s  {m.test[0]}")
    print(f"{len(mutants) - survived} of {len(mutants)} mutants caught")
    return 1 if survived else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="mutants to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutants and their guarding tests")
    ap.add_argument("--show", action="store_true", help="print the named mutants as unified diffs")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per guarding test run")
    args = ap.parse_args()
    known = {m.name: m for m in MUTANTS}
    unknown = [n for n in args.names if n not in known]
    if unknown:
        ap.error(f"unknown mutant(s) {', '.join(unknown)}; --list shows them")
    chosen = [known[n] for n in args.names] if args.names else MUTANTS
    if args.list:
        for m in chosen:
            print(f"{m.name:<52} {m.path:<36} {' '.join(m.test)}")
        return 0
    if args.show:
        for m in chosen:
            original, bad = mutated(m)
            sys.stdout.writelines(difflib.unified_diff(original.splitlines(True), bad.splitlines(True),
                                                       f"a/{m.path}", f"b/{m.path}"))
        return 0
    return run(chosen, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
