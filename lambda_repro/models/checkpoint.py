"""Loading and saving checkpoints, safely, and building the model a checkpoint was trained as.

Two formats load: a bare state dict, and a training dict whose ``state_dict`` entry holds
the weights (the published file: ``state_dict`` with DataParallel's ``module.`` prefix,
plus ``epoch``, ``arch``, ``best_acc1``, ``optimizer``). Our own checkpoints are the
latter, with more entries. Files are read with ``torch.load(weights_only=True)``: tensors,
containers and plain numbers only, so a pickle that would run code is refused unrun.
"""

from __future__ import annotations

import errno
import os
import pickle
import pickletools
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lambda_repro.models._registry import create_model, list_models

# Prefixes that wrappers add to every key: DataParallel / DDP, and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or does not fit the model."""


# What to do about a checkpoint that cannot be used: said once, at the end of every such error.
START_OVER = "delete it to start training over, or use another checkpoint file"
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6: a zip archive
_PICKLE_PROTOCOL_OP = 0x80  # the first byte of a pickle (protocol >= 2): torch's legacy format, or plain pickle


_SAFE_GLOBAL_PREFIXES = ("torch.", "collections.", "builtins.", "_codecs.", "numpy.")


def _refused_global(err: Exception, path: Path) -> str | None:
    """The code-running object that made weights_only refuse the file (``posix.system``), if that was the reason.

    torch names it for a zip checkpoint; in a plain pickle (which torch cannot even parse) the
    pickle's opcodes are listed, without running any, for an import of something else than
    torch's own rebuild functions and containers.
    """
    match = re.search(r"GLOBAL ([\w.]+)", str(err))
    if match:
        return match.group(1)
    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for opcode, arg, _ in pickletools.genops(f):
                if isinstance(arg, str):
                    strings.append(arg)
                name = None
                if opcode.name in ("GLOBAL", "INST"):
                    name = str(arg).replace(" ", ".")
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    name = f"{strings[-2]}.{strings[-1]}"
                if name and not name.startswith(_SAFE_GLOBAL_PREFIXES):
                    return name
    except Exception:  # not a pickle after all: the caller says it is damaged
        return None
    return None


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint file safely; always returns a training dict with ``state_dict``.

    A file that cannot be used raises :class:`CheckpointError` saying what it is: missing,
    empty, truncated, not a checkpoint at all, or a pickle holding code-running objects
    (refused, never run), and how to go on.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}; {START_OVER}") from None
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): not a checkpoint; {START_OVER}")
    is_zip = head == _ZIP_MAGIC
    if is_zip and not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"{path} is truncated: a zip archive ({size} bytes) missing its end (the write was cut short); {START_OVER}"
        )
    if not is_zip and head[0] != _PICKLE_PROTOCOL_OP:
        raise CheckpointError(
            f"{path} is not a checkpoint at all ({size} bytes, first bytes {head.hex()}: neither torch.save's zip "
            f"archive nor a pickle); {START_OVER}"
        )
    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of plain pickles before refusing them: the error says it all.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = _refused_global(err, path)
        if refused:
            raise CheckpointError(
                f"refused to load {path}: it holds objects that would run code when loaded ({refused}); "
                f"nothing was run. {START_OVER[0].upper()}{START_OVER[1:]}"
            ) from None
        reason = _first_line(err)
        raise CheckpointError(f"{path} is damaged: its pickle does not decode ({reason}); {START_OVER}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        kind = "a damaged zip archive" if is_zip else "a truncated or damaged pickle"
        raise CheckpointError(f"{path} is {kind} ({_first_line(err)}); {START_OVER}") from None
    if not isinstance(payload, Mapping):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a state dict or a training dict")
    if "state_dict" in payload and isinstance(payload["state_dict"], Mapping):
        return dict(payload)
    if all(isinstance(v, torch.Tensor) for v in payload.values()):
        return {"state_dict": dict(payload)}
    raise CheckpointError(f"{path} is neither a state dict nor a training dict with a 'state_dict' entry")


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    # weights_only refusals start with paragraphs of advice; the reason follows this marker.
    text = text.split("WeightsUnpickler error:", 1)[-1].strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


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
    classifier = state_dict.get("fc.weight")
    if "fc.weight" in expected and classifier is not None and classifier.shape[0] != expected["fc.weight"].shape[0]:
        # The commonest mismatch (a 10-class checkpoint into a 1000-class model): say what fixes it.
        problems.append(
            f"hint: the checkpoint has {classifier.shape[0]} classes; build the model with "
            f"num_classes={classifier.shape[0]}, or let model_from_checkpoint(path) build it"
        )
    if problems:
        raise CheckpointError("checkpoint does not fit the model: " + " | ".join(problems))


def checkpoint_num_classes(state_dict: Mapping[str, torch.Tensor]) -> int:
    """The number of outputs of a (prefix-stripped) state dict's classifier ``fc``."""
    weight = state_dict.get("fc.weight")
    if weight is None or weight.dim() != 2:
        raise CheckpointError("checkpoint has no classifier weight 'fc.weight'; cannot tell its number of classes")
    return int(weight.shape[0])


def model_from_checkpoint(
    path: str | os.PathLike, arch: str | None = None, **model_kwargs: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model ``path`` was trained as, load its weights, and return ``(model, checkpoint)``.

    The architecture is the checkpoint's ``arch`` entry (ours and the published file record
    it), or ``arch`` for a bare state dict; the number of classes is the classifier's rows.
    ``checkpoint["classes"]`` holds the class names when the file records them (ours do; the
    published file does not: its labels are the sorted ImageNet wnids). ``model_kwargs`` go to
    :func:`create_model` (e.g. ``lambda_implementation``). The model is returned in eval mode.
    """
    checkpoint = read_checkpoint(path)
    recorded = checkpoint.get("arch")
    name = arch or recorded
    if not name:
        raise CheckpointError(f"{path} records no architecture ('arch'); name it, e.g. arch='lambda_resnet50'")
    if name not in list_models():
        raise CheckpointError(
            f"{path}: architecture {name!r} is not a registered model; pass arch= one of {', '.join(list_models())}"
        )
    state_dict = strip_wrapper_prefixes(checkpoint["state_dict"])
    num_classes = checkpoint_num_classes(state_dict)
    classes = checkpoint.get("classes")
    if classes is not None and len(classes) != num_classes:
        raise CheckpointError(f"{path} records {len(classes)} class names but its classifier has {num_classes} outputs")
    model = create_model(name, num_classes=num_classes, **model_kwargs)
    check_state_dict(model, state_dict)
    model.load_state_dict(state_dict, strict=True)
    checkpoint["state_dict"] = state_dict
    checkpoint["arch"] = name
    return model.eval(), checkpoint


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load weights from ``path`` into ``model`` (strictly) and return the whole checkpoint dict.

    Accepts our checkpoints, the published training dict (``module.`` prefixes are
    stripped) and bare state dicts. The returned dict also carries ``epoch``,
    ``optimizer``, ... when the file has them, for resuming.
    """
    checkpoint = read_checkpoint(path)
    state_dict = strip_wrapper_prefixes(checkpoint["state_dict"])
    try:
        check_state_dict(model, state_dict)
    except CheckpointError as err:
        made_for = f" (it was made for {checkpoint['arch']})" if isinstance(checkpoint.get("arch"), str) else ""
        raise CheckpointError(
            f"{path} is a checkpoint of another model or recipe{made_for}: {err}; load it into the model it was "
            "made for (model.name), or use a checkpoint of this model"
        ) from None
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
    except Exception as err:
        Path(tmp_name).unlink(missing_ok=True)
        if _disk_full(err):
            raise CheckpointSpaceError(path, _serialized_size(checkpoint)) from None
        raise
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _disk_full(err: BaseException | None) -> bool:
    """ENOSPC / EDQUOT anywhere in the chain: torch.save reports a full disk as a RuntimeError of its zip writer."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


class _ByteCounter:
    """A write-only file that keeps only the number of bytes written to it."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data) -> int:
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _serialized_size(checkpoint: Mapping[str, Any]) -> int | None:
    counter = _ByteCounter()
    try:
        torch.save(dict(checkpoint), counter)
    except Exception:
        return None
    return counter.size


class CheckpointSpaceError(OSError):
    """The disk is full (or the quota reached) while writing a checkpoint; says how much space it needs."""

    def __init__(self, path: Path, needed_bytes: int | None) -> None:
        free = shutil.disk_usage(path.parent).free
        needed = f"about {needed_bytes / 2**20:.1f} MiB" if needed_bytes else "more space"
        super().__init__(
            errno.ENOSPC,
            f"No space left on device for checkpoint {path}: it needs {needed}, {free / 2**20:.1f} MiB free in "
            f"{path.parent}; the previous checkpoint is kept. Free some space, or write checkpoints to another disk "
            "(train.checkpoint), and run again to resume",
        )
        self.path, self.needed_bytes, self.free_bytes = path, needed_bytes, free

    def __str__(self) -> str:
        return self.strerror
