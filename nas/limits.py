"""The params/FLOPs limits of a post-training search, shared by the image pipeline and the text pipeline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def search_limits(config: dict) -> dict[str, int]:
    """The params/FLOPs limits of the post-training search that are set (`--max-params`, `--max-flops`).

    A FLOPs limit is compared with the space's `flops`; for NB201 that is NAS-Bench-201's own convention (its
    published MFLOPs x 1e6, pooling not counted), not `macs`, so a budget reads like the benchmark's figures."""
    sc = config["search"]
    return {kind: sc[f"max_{kind}"] for kind in ("params", "flops") if sc[f"max_{kind}"] is not None}


def within(space, task: dict[str, Any], limits: dict[str, int], latency: Callable[[Any], float] | None = None,
           max_latency: float | None = None) -> Callable[[Any], bool]:
    """`allowed(arch)`: every analytic cost of `limits` (under `task`) and the latency model within their limits."""
    def allowed(arch) -> bool:
        if latency is not None and latency(arch) > max_latency:
            return False
        return all(getattr(space, kind)(arch, **task) <= limit for kind, limit in limits.items())
    return allowed
