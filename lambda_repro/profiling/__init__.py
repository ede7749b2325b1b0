"""Counting and measuring: parameters, MACs, and (later) throughput and memory."""

from lambda_repro.profiling.counting import count_macs, count_params, reference_formulation

__all__ = ["count_macs", "count_params", "reference_formulation"]
