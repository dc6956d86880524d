"""The server's engine: one model, one scheduler thread, and every session's work advanced a step at a time.

A job is a call submitted from any thread (`submit`); a job whose call returns a step generator (a translator's
`update_steps`, a session's `handle_steps`) is advanced one forward at a time. Each tick the scheduler lets every
active job ask for its next forward and runs the prompt chunks of all of them (prompts are fed in chunks of
`prefill_chunk` tokens) as *one* batched forward and their one-token draft steps as another
(`model.batching.batched_forward`: sessions share the cost of reading the weights; chunks whose padding would
cost more than their own tokens wait for the next tick, the longest-waiting first). Short jobs go first: a job that
has had more than `heavy_s` of the model's time (a maximal final, a long prompt) runs only in ticks where no lighter
job waits, and otherwise one forward of its own whenever it has waited `max_wait_s` — so one session's huge update
costs the others at most one forward per `max_wait_s`, never a whole job, and is never starved: a suspended job is
resumed, never dropped. A plain call (session set-up, a test's gate) runs to its end when its turn comes.

`close()` stops the scheduler within a tick: jobs still running are abandoned (their futures cancelled); the thread
is a daemon, so the interpreter never waits for a job.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch

from ..base.errors import AlignheadsError
from ..base.languages import parse_direction
from ..heads.headset import HeadSet
from ..model.batching import Step, batched_forward
from ..model.loader import LoadedModel
from ..simul.translator import Forward, SimultaneousTranslator, SourceWord, TranslatorConfig, run_forward
from ..speech.pipeline import build_translator

PREFILL_CHUNK = 64  # prompt tokens per forward: the most one session's prompt delays the others per tick
HEAVY_S = 0.5  # model seconds after which a job yields to lighter ones (a partial update takes ~0.1-0.3 s)
MAX_WAIT_S = 0.5  # the longest a heavy job waits for its next forward while lighter jobs keep the model busy


@dataclass
class _Job:
    call: Callable[..., Any]
    args: tuple
    future: Future = field(default_factory=Future)
    steps: Generator | None = None
    request: Forward | None = None
    reply: torch.Tensor | None = None
    waiting_since: float = 0.0  # when its current request started waiting (round-robin of chunks, aging)
    service_s: float = 0.0  # model time spent on it (a batched forward's time shared among its rows)


class Engine:
    """One model in memory and the scheduler thread every model call runs on (see the module docstring)."""

    def __init__(self, lm: LoadedModel, headsets: dict[str, HeadSet], threads: int | None = None,
                 batch: bool = True, prefill_chunk: int | None = PREFILL_CHUNK, heavy_s: float = HEAVY_S,
                 max_wait_s: float = MAX_WAIT_S):
        if not headsets:
            raise AlignheadsError("the server needs at least one head set (--heads)")
        self.lm, self.headsets = lm, headsets
        self.batch, self.prefill_chunk = batch, prefill_chunk
        self.heavy_s, self.max_wait_s = heavy_s, max_wait_s
        self.busy_s = self.cpu_s = 0.0
        self.jobs = 0
        self.forwards = self.batched_rows = self.batched_chunks = 0  # forwards; rows that shared one; prompt chunks
        # Recent final translations. A client whose call timed out (WhisperLiveKit waits 15 s) reconnects and sends
        # the same final again (with the prefix it had been shown, perhaps older than what this server committed);
        # on a slow CPU every attempt would time out again. The first attempt still finishes here, and the retry is
        # answered from this table at once. Touched on the scheduler thread only.
        self.finals: OrderedDict[tuple, str] = OrderedDict()
        self.finals_reused = 0
        self._queue: deque[_Job] = deque()
        self._active: list[_Job] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, args=(threads,), name="alignheads-engine", daemon=True)
        self._thread.start()

    @property
    def directions(self) -> list[str]:
        return sorted(self.headsets)

    @property
    def queued(self) -> int:
        """Jobs submitted and not yet started."""
        return len(self._queue)

    def translator(self, direction: str, config: TranslatorConfig) -> SimultaneousTranslator:
        if self.prefill_chunk:
            from dataclasses import replace

            config = replace(config, prefill_chunk=self.prefill_chunk)
        return build_translator(self.lm, self.headsets[direction], *parse_direction(direction), "alignatt", config)

    # ------------------------------------------------------------------ submitting
    def submit(self, call: Callable[..., Any], *args) -> Future:
        """Queue `call(*args)` after every job queued before it; a call that returns a step generator is advanced
        step by step among the other jobs. The Future holds what the call (or its generator) returns."""
        job = _Job(call, args)
        with self._wake:
            if self._stopping:
                job.future.set_exception(AlignheadsError("the engine is shut down"))
                return job.future
            self._queue.append(job)
            self._wake.notify()
        return job.future

    async def run(self, call: Callable[..., Any], *args) -> Any:
        """`submit` from the event loop: await the result."""
        return await asyncio.wrap_future(self.submit(call, *args))

    def warmup(self, config: TranslatorConfig) -> None:
        """Build a translator per direction and translate two words (checks the head sets against the model)."""
        words = [SourceWord("Hello", 0.4), SourceWord("world.", 0.9)]
        for direction in self.directions:
            tr = self.submit(self.translator, direction, config).result()
            self.submit(tr.update_steps, words, 1.0).result()
            self.submit(tr.update_steps, words, 1.0, True).result()

    def close(self, timeout: float = 2.0) -> None:
        """Stop within a tick: running jobs are abandoned (their futures cancelled), queued ones never start."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout)
        for job in [*self._queue, *self._active]:
            job.future.cancel()

    # ------------------------------------------------------------------ the scheduler
    def _loop(self, threads: int | None) -> None:
        if threads:
            torch.set_num_threads(threads)
        while True:
            with self._wake:
                while not self._stopping and not self._queue and not self._active:
                    self._wake.wait()
                if self._stopping:
                    return
                started = list(self._queue)
                self._queue.clear()
            t0, c0 = time.perf_counter(), time.thread_time()
            for job in started:
                self._start(job)
            self._tick()
            self.busy_s += time.perf_counter() - t0
            self.cpu_s += time.thread_time() - c0  # the model's CPU time when torch runs on this thread alone

    def _start(self, job: _Job) -> None:
        try:
            result = job.call(*job.args)
        except BaseException as e:  # noqa: BLE001 - handed to whoever waits on the future
            self._finish(job, error=e)
            return
        if inspect.isgenerator(result):
            job.steps = result
            self._active.append(job)
        else:
            self._finish(job, result)

    def _advance(self, job: _Job) -> None:
        """Send the job its reply; it asks for the next forward or finishes."""
        try:
            with torch.inference_mode():
                job.request = job.steps.send(job.reply)
            job.reply = None
            job.waiting_since = time.perf_counter()
        except StopIteration as done:
            self._active.remove(job)
            self._finish(job, done.value)
        except BaseException as e:  # noqa: BLE001
            self._active.remove(job)
            self._finish(job, error=e)

    def _tick(self) -> None:
        """Every active job asks for a forward; the light jobs' draft steps run together and one prompt chunk alone;
        heavy jobs run when no light job waits, or one forward when they have waited `max_wait_s`."""
        for job in [j for j in self._active if j.request is None]:
            self._advance(job)
        waiting = [j for j in self._active if j.request is not None]
        light = [j for j in waiting if j.service_s < self.heavy_s]
        if not light:
            self._run_round(waiting)
            return
        now = time.perf_counter()
        due = [j for j in waiting if j.service_s >= self.heavy_s and now - j.waiting_since >= self.max_wait_s]
        if due:  # alone: a long job's cache never pads the light jobs' batch
            self._run_alone(min(due, key=lambda j: j.waiting_since))
        self._run_round(light)

    def _run_round(self, jobs: list[_Job]) -> None:
        """The prompt chunks in one batched forward (the longest-waiting one, and the others while padding costs
        less than their tokens), then every one-token draft step in another."""
        steps = [j for j in jobs if len(j.request.tokens) == 1 and j.request.keep == 1]
        chunks = sorted((j for j in jobs if j not in steps), key=lambda j: j.waiting_since)
        if not self.batch:
            chunks = chunks[:1]  # unbatched: one chunk a tick, round-robin, as before batching
        group: list[_Job] = []
        for job in chunks:
            sizes = [len(j.request.tokens) for j in (*group, job)]
            if not group or len(sizes) * max(sizes) <= 2 * sum(sizes):
                group.append(job)
        for batch in (group, steps):
            if len(batch) > 1 and self.batch:
                self._run_batched(batch)
            else:
                for job in batch:
                    self._run_alone(job)

    def _run_alone(self, job: _Job) -> None:
        t0 = time.perf_counter()
        try:
            job.reply = run_forward(job.request)
            self.forwards += 1
            job.service_s += time.perf_counter() - t0
        except BaseException as e:  # noqa: BLE001
            job.steps.close()
            self._active.remove(job)
            self._finish(job, error=e)
        job.request = None

    def _run_batched(self, jobs: list[_Job]) -> None:
        requests = [j.request for j in jobs]
        t0 = time.perf_counter()
        try:
            with self.lm.lock:
                hidden = batched_forward(self.lm, [Step(r.translator._cache, len(r.translator._cache_ids), r.tokens,
                                                        r.keep, r.capture) for r in requests])
        except BaseException:  # noqa: BLE001 - one by one, so that only the failing job fails
            for job in jobs:
                self._run_alone(job)
            return
        self.forwards += 1
        self.batched_rows += len(jobs)
        self.batched_chunks += sum(len(r.tokens) > 1 for r in requests)
        elapsed, fed = time.perf_counter() - t0, sum(len(r.tokens) for r in requests)
        for job, rows in zip(jobs, hidden, strict=True):
            job.service_s += elapsed * len(job.request.tokens) / fed  # each row's share of the forward
            job.reply, job.request = rows, None

    def _finish(self, job: _Job, result: Any = None, error: BaseException | None = None) -> None:
        self.jobs += 1
        if job.future.cancelled():
            return
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
