"""Interleaved measurement: one persistent spawned process per model, asked in turn for one repetition.

Measuring one model after the other lets load that comes and goes (other jobs on a shared machine)
hit one model and not the other: a ratio of 3.2x was reported where the truth was 0.67x. Here the
parent keeps a worker process per model (each its own peak RSS and CUDA context) and, for each phase
and repetition, asks every worker over a pipe for one timed repetition, alternating which goes first.
Repetition ``i`` of every model then ran within seconds of the others', so a per-pair ratio cancels
the load the pair shared.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from dataclasses import dataclass

from lambda_repro.process_setup import configure_process
from lambda_repro.profiling.benchmark import BenchmarkConfig, ModelBench


class WorkerError(RuntimeError):
    """A model's worker process failed; the message carries its traceback."""


def shared_cores(threads: int) -> list[int] | None:
    """The ``threads`` cores every worker is pinned to (Linux); ``None`` where affinity cannot be set.

    Workers never run at once (the parent asks one at a time), so sharing cores costs nothing, and it
    removes the one asymmetry interleaving cannot: the scheduler keeping one worker on a core that a
    background job also uses and the other worker on a quieter one.
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    return sorted(os.sched_getaffinity(0))[: max(1, threads)]


def _serve(conn, label: str, config: BenchmarkConfig, model_kwargs: dict | None, cores: list[int] | None) -> None:
    """The worker's loop: build the model, then answer ``("run", phase)`` and ``("finish",)``.

    ``model_kwargs`` may name the model (``"name"``) when ``label`` is not a model name, e.g. to
    measure one model twice.
    """
    try:
        if cores:
            os.sched_setaffinity(0, cores)
        configure_process(config.resolve_device())  # this process measures: the stages' math mode and heap
        kwargs = dict(model_kwargs or {})
        bench = ModelBench(kwargs.pop("name", label), config, kwargs)
        conn.send(("ok", bench.phases()))
        while True:
            command, *args = conn.recv()
            if command == "run":
                conn.send(("ok", bench.run(*args)))
            elif command == "finish":
                conn.send(("ok", bench.finish()))
                return
    except Exception:  # reported to the parent, which raises it there
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


@dataclass
class ModelWorker:
    """The parent's handle on one model's worker process."""

    name: str
    process: multiprocessing.process.BaseProcess
    conn: object

    @classmethod
    def start(cls, name: str, config: BenchmarkConfig, model_kwargs: dict | None, cores: list[int] | None = None):
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_serve, args=(child_end, name, config, model_kwargs, cores), daemon=True)
        process.start()
        child_end.close()
        return cls(name, process, parent_end)

    def ask(self, *command):
        if command:
            self.conn.send(command)
        try:
            status, value = self.conn.recv()
        except EOFError:
            raise WorkerError(f"{self.name}: worker process died (exit code {self.process.exitcode})") from None
        if status == "error":
            raise WorkerError(f"{self.name}: worker failed:\n{value}")
        return value

    def stop(self) -> None:
        self.conn.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def measure_interleaved(models: dict[str, dict], config: BenchmarkConfig) -> dict[str, dict]:
    """The result of :class:`ModelBench` for every model, repetitions interleaved across the workers.

    Every worker is pinned to the same ``config.threads`` cores (:func:`shared_cores`). A phase stops
    once every model's timed total passed ``max_seconds`` (and ``min_repeats`` pairs
    were taken); a model whose batch did not fit (``None``) is skipped for the rest of that phase.
    """
    cores = shared_cores(config.threads or 1)
    workers = [ModelWorker.start(name, config, kwargs, cores) for name, kwargs in models.items()]
    try:
        phases = [worker.ask() for worker in workers][0]  # every worker lists the same phases
        for phase in phases:
            repetitions = config.latency_repeats if phase == "latency_bs1" else config.repeats
            least = 1 if phase == "latency_bs1" else config.min_repeats
            iters = 1 if phase == "latency_bs1" else config.iters_per_repeat
            totals = dict.fromkeys(models, 0.0)
            active = list(workers)
            for rep in range(repetitions):
                order = active if rep % 2 == 0 else active[::-1]
                for worker in order:
                    seconds = worker.ask("run", phase)
                    if seconds is None:
                        active.remove(worker)
                    else:
                        totals[worker.name] += seconds * iters
                timed_out = config.max_seconds is not None and all(totals[w.name] >= config.max_seconds for w in active)
                if not active or (timed_out and rep + 1 >= least):
                    break
        return {worker.name: worker.ask("finish") for worker in workers}
    finally:
        for worker in workers:
            worker.stop()
