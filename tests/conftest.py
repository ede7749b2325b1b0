"""Shared test helpers: the golden fixtures in ../shared/fixtures (override with LAMBDA_REPRO_FIXTURES)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("LAMBDA_REPRO_FIXTURES", PROJECT_ROOT.parent / "shared" / "fixtures"))

if not (FIXTURES / "fill.py").is_file():
    raise RuntimeError(f"golden fixtures not found at {FIXTURES}; set LAMBDA_REPRO_FIXTURES")
sys.path.insert(0, str(FIXTURES))


def relative_error(out: torch.Tensor | np.ndarray, ref: np.ndarray) -> float:
    out = out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out
    return float(np.linalg.norm(out - ref) / np.linalg.norm(ref))


def calibrated_outputs(module: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixtures' procedure: cumulative BN averaging, one train-mode pass, then eval on the same input."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    module.train()
    with torch.no_grad():
        train_out = module(x)
    module.eval()
    with torch.no_grad():
        eval_out = module(x)
    return train_out, eval_out


@pytest.fixture(scope="session")
def architecture_facts() -> dict:
    return json.loads((FIXTURES / "architecture_facts.json").read_text())


@pytest.fixture(scope="session")
def layer_golden() -> tuple[dict, dict]:
    config = json.loads((FIXTURES / "lambda_layer_golden.json").read_text())
    arrays = dict(np.load(FIXTURES / "lambda_layer_golden.npz"))
    return config, arrays


@pytest.fixture(scope="session")
def model_golden() -> dict:
    return dict(np.load(FIXTURES / "lambda_resnet50_golden.npz"))
