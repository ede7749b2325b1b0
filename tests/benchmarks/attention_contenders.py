"""The self-attention contenders now live in the library (``lambda_repro.profiling.contenders``), shared by the
profile stage's claims table, the microbenchmarks and ``tests/test_local_attention.py``; re-exported here."""

from lambda_repro.profiling.contenders import GlobalSelfAttention, LocalSelfAttention, _halo_mask

__all__ = ["GlobalSelfAttention", "LocalSelfAttention", "_halo_mask"]
