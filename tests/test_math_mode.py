"""The CUDA math mode and the kept CPU heap are set by the processes the stages own, never by the library.

No GPU here: the tests ask for a CUDA device (``torch.device("cuda")`` needs no driver) and
check the flags a process entry point sets before any work, with the work itself stubbed out.
The heap is process-wide, so ``keep_heap`` is replaced by a recorder: the stub sees whether it ran.
"""

from __future__ import annotations

import multiprocessing
import types

import pytest
import torch

from lambda_repro import process_setup
from lambda_repro.distributed import DistributedContext
from lambda_repro.models import math_mode
from lambda_repro.models.math_mode import configure_process_math, process_math_mode

CUDA = torch.device("cuda")


class Stop(Exception):
    """Raised by a stubbed piece of work once it has read the flags."""


def flags() -> dict[str, bool]:
    return {
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


@pytest.fixture
def pytorch_defaults():
    """PyTorch's defaults (matmul TF32 off, cuDNN TF32 on, no benchmark) during the test, restored after."""
    before = flags()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = before["matmul_tf32"]
    torch.backends.cudnn.allow_tf32 = before["cudnn_tf32"]
    torch.backends.cudnn.benchmark = before["cudnn_benchmark"]


ON_CUDA = {"matmul_tf32": True, "cudnn_tf32": True, "cudnn_benchmark": True}
SET_UP = {**ON_CUDA, "heap_kept": 1}  # what the work of an entry point sees: the math mode, and the heap kept once
UNTOUCHED = {"matmul_tf32": False, "cudnn_tf32": True, "cudnn_benchmark": False}


def test_the_settings_follow_cudnn_tf32_on_cuda_and_are_empty_on_cpu(pytorch_defaults):
    assert process_math_mode(torch.device("cpu")) == {}
    assert process_math_mode(CUDA) == {"allow_tf32": True, "cudnn_benchmark": True}
    torch.backends.cudnn.allow_tf32 = False  # a user who turned TF32 off for cuDNN gets it off for matmuls too
    assert process_math_mode(CUDA) == {"allow_tf32": False, "cudnn_benchmark": True}


def test_configuring_for_cuda_sets_the_flags_and_for_cpu_nothing(pytorch_defaults):
    assert configure_process_math(torch.device("cpu")) == {}
    assert flags() == UNTOUCHED
    assert configure_process_math(CUDA) == {"allow_tf32": True, "cudnn_benchmark": True}
    assert flags() == ON_CUDA


@pytest.fixture
def heap(monkeypatch) -> list:
    """Stands in for ``keep_heap`` (it would change this test process's allocator); one entry per call."""
    calls: list = []
    monkeypatch.setattr(process_setup, "keep_heap", lambda: calls.append("kept") or {"heap": "kept"})
    return calls


def recording_stub(seen: list, heap: list):
    def stub(*args, **kwargs):
        seen.append({**flags(), "heap_kept": len(heap)})
        raise Stop

    return stub


def cuda_context() -> DistributedContext:
    return DistributedContext(rank=0, local_rank=0, world_size=1, device=CUDA, backend=None)


def test_the_training_worker_sets_the_math_mode_before_training(pytorch_defaults, heap, monkeypatch, tmp_path):
    from lambda_repro.training import TrainConfig, worker

    config = tmp_path / "config.json"
    config.write_text(TrainConfig(model="lambda_resnet26", manifest="m.json", world_size=1).to_json())
    seen: list = []
    monkeypatch.setattr(worker, "tie_to_launcher", lambda: None)
    monkeypatch.setattr(worker, "init_distributed", lambda backend: cuda_context())
    monkeypatch.setattr(worker, "shutdown_distributed", lambda context: None)
    monkeypatch.setattr(worker, "train", recording_stub(seen, heap))
    with pytest.raises(Stop):
        worker.main(["--config", str(config)])
    assert seen == [SET_UP]


def test_the_evaluate_worker_sets_the_math_mode_before_scoring(pytorch_defaults, heap, monkeypatch, tmp_path):
    from lambda_repro.evaluation import worker

    job = worker.EvaluationJob("c.pt", "lambda_resnet26", "m.json", image_size=32, batch_size=2)
    config = tmp_path / "job.json"
    config.write_text(job.to_json())
    seen: list = []
    monkeypatch.setattr(worker, "init_distributed", lambda backend: cuda_context())
    monkeypatch.setattr(worker, "shutdown_distributed", lambda context: None)
    monkeypatch.setattr(worker, "score_job", recording_stub(seen, heap))
    with pytest.raises(Stop):
        worker.main(["--config", str(config), "--output", str(tmp_path / "out.json")])
    assert seen == [SET_UP]


def test_the_evaluate_stage_sets_it_when_it_scores_in_its_own_process(pytorch_defaults, heap, monkeypatch):
    from pipelines import evaluate

    seen: list = []
    monkeypatch.setattr(evaluate, "evaluation_job", lambda params: types.SimpleNamespace(backend="auto"))
    monkeypatch.setattr(evaluate, "device_count_problem", lambda nproc: None)
    monkeypatch.setattr(evaluate, "init_distributed", lambda backend: cuda_context())
    monkeypatch.setattr(evaluate, "score_job", recording_stub(seen, heap))
    with pytest.raises(Stop):
        evaluate.score({"distributed": {"nproc_per_node": 1}})
    assert seen == [SET_UP]


def test_a_profile_measuring_process_sets_it_before_building_the_model(pytorch_defaults, heap, monkeypatch):
    from lambda_repro.profiling import interleaved
    from lambda_repro.profiling.benchmark import BenchmarkConfig

    seen: list = []
    monkeypatch.setattr(interleaved, "ModelBench", recording_stub(seen, heap))
    parent, child = multiprocessing.Pipe()
    interleaved._serve(child, "lambda_resnet26", BenchmarkConfig(device="cuda"), None, None)  # the spawned target
    status, message = parent.recv()
    assert status == "error" and "Stop" in message
    assert seen == [SET_UP]


def test_the_profile_stage_sets_it_for_the_evidence_it_measures_itself(pytorch_defaults, heap, monkeypatch):
    import argparse

    from lambda_repro.config import load_params
    from pipelines import profile_stage

    params = load_params("params.yaml")
    params["profile"]["device"] = "cuda"
    seen: list = []
    monkeypatch.setattr(profile_stage, "benchmark_models", recording_stub(seen, heap))
    with pytest.raises(Stop):
        profile_stage.run(params, argparse.Namespace(metrics_dir="unused"))
    assert seen == [SET_UP]


def test_the_benchmark_command_sets_it_in_its_own_process(pytorch_defaults, heap, monkeypatch):
    import argparse

    from lambda_repro.commands import benchmark

    parser = argparse.ArgumentParser()
    benchmark.add_parser(parser.add_subparsers())
    args = parser.parse_args(["benchmark", "lambda_resnet26", "--device", "cuda", "--threads", "1"])
    seen: list = []
    monkeypatch.setattr(benchmark, "resolve_device", lambda device: CUDA)
    monkeypatch.setattr(benchmark, "run_interleaved", recording_stub(seen, heap))
    with pytest.raises(Stop):
        benchmark.run(args)
    assert seen == [SET_UP]


def test_the_library_never_sets_it_on_its_own(pytorch_defaults):
    """Building and running a model on CPU (the library's work) leaves every flag as it was."""
    from lambda_repro.models import create_model

    model = create_model("lambda_resnet26", num_classes=4).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    assert flags() == UNTOUCHED
    assert math_mode.process_math_mode(torch.device("cpu")) == {}


def test_the_setup_reports_what_it_did_for_the_runs_records(pytorch_defaults, heap):
    done = process_setup.configure_process(CUDA)
    assert done == {"math_mode": {"allow_tf32": True, "cudnn_benchmark": True}, "heap": "kept"} and heap == ["kept"]
    assert process_setup.process_tags(done) == {
        "process.heap": "kept",
        "process.math_mode.allow_tf32": "True",
        "process.math_mode.cudnn_benchmark": "True",
    }
