"""Loading and saving checkpoints, safely.

Two formats load: a bare state dict, and a training dict whose ``state_dict`` entry holds
the weights (the published file: ``state_dict`` with DataParallel's ``module.`` prefix,
plus ``epoch``, ``arch``, ``best_acc1``, ``optimizer``). Our own checkpoints are the
latter, with more entries. Files are read with ``torch.load(weights_only=True)``: tensors,
containers and plain numbers only, so a pickle that would run code is refused unrun.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Prefixes that wrappers add to every key: DataParallel / DDP, and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or does not fit the model."""


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint file safely; always returns a training dict with ``state_dict``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain containers "
            f"(loading it would run arbitrary code). Details: {str(err).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a state dict or a training dict")
    if "state_dict" in payload and isinstance(payload["state_dict"], Mapping):
        return dict(payload)
    if all(isinstance(v, torch.Tensor) for v in payload.values()):
        return {"state_dict": dict(payload)}
    raise CheckpointError(f"{path} is neither a state dict nor a training dict with a 'state_dict' entry")


def strip_wrapper_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove ``module.`` / ``_orig_mod.`` prefixes that appear on *every* key."""
    keys = list(state_dict)
    changed = True
    while changed and keys:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in keys):
                state_dict = {k[len(prefix) :]: v for k, v in state_dict.items()}
                keys = list(state_dict)
                changed = True
    return dict(state_dict)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DataParallel / DDP / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def check_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`CheckpointError` naming every missing, unexpected or wrongly shaped key."""
    expected = unwrap_model(model).state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(t.shape)}"
        for k, t in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(t.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
    if wrong_shape:
        problems.append(f"wrongly shaped keys ({len(wrong_shape)}): {'; '.join(wrong_shape)}")
    if problems:
        raise CheckpointError("checkpoint does not fit the model: " + " | ".join(problems))


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load weights from ``path`` into ``model`` (strictly) and return the whole checkpoint dict.

    Accepts our checkpoints, the published training dict (``module.`` prefixes are
    stripped) and bare state dicts. The returned dict also carries ``epoch``,
    ``optimizer``, ... when the file has them, for resuming.
    """
    checkpoint = read_checkpoint(path)
    state_dict = strip_wrapper_prefixes(checkpoint["state_dict"])
    check_state_dict(model, state_dict)
    unwrap_model(model).load_state_dict(state_dict, strict=True)
    checkpoint["state_dict"] = state_dict
    return checkpoint


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Write ``checkpoint`` atomically: a crash or a full disk never leaves a half-written file.

    The data goes to a temporary file in the same directory, is flushed to disk, and
    only then replaces ``path`` (``os.replace`` is atomic on POSIX).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(checkpoint), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
