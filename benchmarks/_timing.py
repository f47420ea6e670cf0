"""Timing helpers shared by the benchmark scripts: device choice, thread count and synchronised step timing."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits until `device` has finished its queued work: `torch.cuda.synchronize` on CUDA, a
    no-op on the CPU (whose work is done when a call returns)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def prepare(device: str, threads: int, seed: int) -> tuple[torch.device, Callable[[], None]]:
    """Set torch's threads (0: keep the default) and seed; return the device (`auto` prefers CUDA) and a
    function that waits for it (a no-op on the CPU)."""
    if threads:
        torch.set_num_threads(threads)
    chosen = torch.device("cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu")
    torch.manual_seed(seed)
    return chosen, synchronizer(chosen)


def time_steps(step: Callable[[], None], n: int, sync: Callable[[], None]) -> float:
    """Mean wall time of `n` calls of `step`, the device synchronised before each clock read."""
    sync()
    start = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return (time.perf_counter() - start) / n


def environment(device: torch.device) -> dict[str, object]:
    """What a timing depends on besides the script's options: the device (with its name), threads, versions."""
    import platform

    return {
        "device": str(device) if device.type == "cpu" else f"{device} ({torch.cuda.get_device_name(device)})",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def write_quantities(out: str, command: str, rows: list[dict], digits: int, note: str, **extra: object) -> None:
    """Write a `quantity -> measured` table (the README's `json:` report section reads it) atomically, and print its
    rows with `digits` decimals."""
    from nas.io import atomic_write_json

    atomic_write_json(out, {"command": command, "columns": [["quantity", "quantity"], ["value", "measured"]],
                            "digits": {"value": digits}, "rows": rows, **extra, "note": note})
    for row in rows:
        print(f"{row['quantity']}: {row['value']:.{digits}f}")
