"""``small @ wide``: a small constant matrix times a wide one, on the fastest CPU GEMM at hand.

The spectral formulation's row DFTs are such products: ``(W, 2*bins) @ (2*bins, M)`` with ``M`` in the
thousands. PyTorch runs a float32 ``mm`` on MKL, whose sgemm on AMD CPUs runs well below the oneDNN
kernels that the same build uses for convolutions. oneDNN's inner product (``mkldnn._linear_pointwise``,
what inductor's CPU backend calls) computes the same product with the wide matrix as its transposed
"weight", no copy: measured interleaved on the 2-core AMD EPYC host (MKL sgemm ~140-210 GFLOP/s,
oneDNN 3x3 conv ~400), ``(56 x 68) @ (68 x 8192)`` ran at ~295 GFLOP/s against ~90-165 for ``mm``
(``scripts/bench_lambda.py --only rowdft`` times both at the layers' shapes, ``--only layers`` the effect on
the layers). A rule, not a measurement: on
a host whose MKL sgemm runs at peak (Intel) the two kernels should be alike, but that was not measured.

No autograd: for the kernels that write their own backward (``RowBlockContraction``); graph capture
(compile's fake tensors, export) never reaches it.
"""

from __future__ import annotations

import torch


def _onednn_product() -> object | None:
    # Built with oneDNN, and not switched off by the user (torch.backends.mkldnn.flags(enabled=False)).
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return None
    return getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


def _onednn_kernel(small: torch.Tensor, wide: torch.Tensor) -> object | None:
    """oneDNN's product for float32 on CPU (where MKL's sgemm is the alternative), else None (``mm``)."""
    if wide.device.type != "cpu" or not wide.dtype == small.dtype == torch.float32:
        return None
    if torch.is_grad_enabled() and (wide.requires_grad or small.requires_grad):
        return None  # no autograd formula
    return _onednn_product()


def uses_onednn(small: torch.Tensor, wide: torch.Tensor) -> bool:
    """Whether ``small_times_wide`` runs on oneDNN for these operands (``mm`` otherwise)."""
    return _onednn_kernel(small, wide) is not None


def small_times_wide(small: torch.Tensor, wide: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``small @ wide``, ``(a, K) @ (K, M) -> (a, M)``.

    Returns a new tensor on oneDNN (``out`` is then left alone: the caller uses what is returned),
    else ``torch.mm(..., out=out)``."""
    kernel = _onednn_kernel(small, wide)
    if kernel is not None:
        return kernel(small.contiguous(), wide.t(), None, "none", [], "")
    return torch.mm(small, wide, out=out)
