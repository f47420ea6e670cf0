"""The one error type of `nasbench`: a user-facing mistake, told in one sentence."""

from __future__ import annotations


class BenchmarkError(ValueError):
    """A bad benchmark name, path, arch, dataset, metric or table file; the message names it and what is accepted."""
