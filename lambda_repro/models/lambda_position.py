"""Former home of the formulation chooser, kept so that older importers keep working.

The formulations now live in ``lambda_repro.models.lambda_formulations``.
"""

from lambda_repro.models.lambda_formulations.chooser import choose_formulation, lambda_output

__all__ = ["choose_formulation", "lambda_output"]
