"""Exact formulations of the lambda layer's output, and the chooser that picks one per layer.

* ``reference``: the published conv3d + einsum (the nominal MAC count);
* ``dense``: dense relative-position matrices, all GEMMs (small maps);
* ``spectral``: row DFT + block-Toeplitz column GEMMs (large maps);
* ``chooser``: which formulation a layer runs (``"auto"``), and how to run it.
"""

from lambda_repro.models.lambda_formulations.chooser import IMPLEMENTATIONS, choose_formulation, lambda_output

__all__ = ["IMPLEMENTATIONS", "choose_formulation", "lambda_output"]
