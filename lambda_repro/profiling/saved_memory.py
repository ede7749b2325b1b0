"""Memory a training forward pass keeps for the backward pass: the bytes of the tensors autograd saves.

This is the memory that grows with the batch and the map (activations, attention maps), the
quantity the paper's memory claims are about, and unlike the CPU's peak RSS (a process-wide
high-water mark that cannot be reset) it can be read for one layer among many in one process, on
any device. Storages shared by several saved tensors (views, a tensor saved twice) count once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


def saved_tensor_bytes(forward: Callable[[], torch.Tensor], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages autograd saves while ``forward()`` runs (its output included).

    Storages of ``exclude`` (pass the module's parameters: weights exist before and after the pass,
    whatever the input's size) are not counted.
    """
    excluded = {(t.device.type, t.untyped_storage().data_ptr()) for t in exclude}
    storages: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = (t.device.type, storage.data_ptr())
        if key not in excluded:
            storages[key] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    if isinstance(out, torch.Tensor):
        storage = out.untyped_storage()
        storages[(out.device.type, storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())
