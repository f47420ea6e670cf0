"""Latency constraints for the post-training search: a lookup table of measured archs or a predictor hook.

`search.latency` names where latency comes from:

- a per-layer lookup table (`nas latency build`, the once-for-all/FBNet approach): the JSON written by
  `build_lookup_table`, `latency(arch) = constant + sum of one measured entry per block`, in the layout of
  `space.cost_terms` (block entries are 0 where a block is inactive), for the device it was measured on;
- a JSON or CSV file of measured archs (`{"<arch string>": ms, ...}` or a CSV with columns `arch,latency_ms`),
  e.g. measured on the deployment device; an arch the table lacks is treated as over the limit, so the
  search keeps to measured archs (and says how many it could not look up);
- `module:function`, an importable callable `function(arch) -> ms` (a latency predictor: a fitted model, a
  per-layer lookup table, a call to a device farm); it must be cheap, the search calls it once per candidate.

`search.max_latency` (ms) is the limit. Both are checked before training starts, so a typo costs nothing.
"""

from __future__ import annotations

import csv
import importlib
import json
import re
from collections.abc import Callable
from pathlib import Path

from searchspaces import Arch, Space

from .errors import UserError

LatencyFn = Callable[[Arch], float]


LUT_FORMAT = "supernas-latency-lut/1"


def _from_lookup_table(data: dict, path: Path, space: Space) -> LatencyFn:
    import numpy as np

    if data.get("space") != space.name:
        raise UserError(f"latency table {path} is for space {data.get('space')!r}, not {space.name!r}")
    terms = [([space.label_index(label) for label in term["labels"]], np.asarray(term["table"], dtype=float))
             for term in data["terms"]]
    constant = float(data["constant_ms"])

    def latency(arch: Arch) -> float:
        codes = arch.codes()
        return constant + sum(float(table[tuple(codes[c] for c in columns)]) for columns, table in terms)

    return latency


def _from_table(path: Path, space: Space) -> LatencyFn:
    try:
        if path.suffix == ".csv":
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh))
            if rows and not {"arch", "latency_ms"} <= set(rows[0]):
                raise UserError(f"latency table {path} needs the columns arch and latency_ms")
            raw = {row["arch"]: row["latency_ms"] for row in rows}
        else:
            raw = json.loads(path.read_text())
            if isinstance(raw, dict) and raw.get("format") == LUT_FORMAT:
                return _from_lookup_table(raw, path, space)
            if not isinstance(raw, dict):
                raise UserError(f"latency table {path} must map arch strings to milliseconds")
        table = {space.parse(str(arch)): float(ms) for arch, ms in raw.items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"cannot read latency table {path}: {exc}") from None
    if not table:
        raise UserError(f"latency table {path} is empty")
    return lambda arch: table.get(arch, float("inf"))


def _from_hook(spec: str) -> LatencyFn:
    module_name, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"search.latency={spec!r} is neither a file nor an importable module:function "
                        f"({exc})") from None
    if not callable(fn):
        raise UserError(f"search.latency={spec!r} is not callable")
    return lambda arch: float(fn(arch))


def load_latency(spec: str, space: Space) -> LatencyFn:
    """The latency function `arch -> ms` that `search.latency` names (a table file or `module:function`)."""
    path = Path(spec).expanduser()
    if path.is_file():
        return _from_table(path, space)
    if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", spec):
        return _from_hook(spec)
    raise UserError(f"search.latency={spec!r} is neither an existing table file (.json/.csv) nor module:function")


def _median_ms(module: Callable, x, repeats: int, warmup: int) -> float:
    """Median wall time (ms) of `module(x)` without gradient, synchronising CUDA around each call."""
    import statistics
    import time

    import torch

    def sync() -> None:
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)

    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            sync()
            started = time.perf_counter()
            module(x)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def build_lookup_table(net, space: Space, task: dict, device, batch_size: int = 1, repeats: int = 20,
                       warmup: int = 3) -> dict:
    """Measure a per-block latency lookup table of a MobileNet supernet on `device`.

    Every elastic block is exported at each (kernel, expand) and timed alone on an input of its real shape; the
    stem with the fixed first block and the head are timed once (the constant). The result, in the layout of
    `space.cost_terms` (0 for inactive blocks), is what `search.latency` reads. Sums of per-block times leave
    out the framework overhead between blocks, so they rank archs well but are not end-to-end latencies.
    """
    import numpy as np
    import torch
    from torch import nn

    from searchspaces.mobilenet import DEPTHS, EXPANDS, KERNELS
    from supernets import MobileNetSupernet

    if not isinstance(net, MobileNetSupernet):
        raise UserError(f"a latency lookup table can be measured for the mobilenet space, not {space.name!r}; "
                        "use search.latency=module:function for a predictor")
    layout = space.layout(**task)
    net = net.to(device).eval()
    sizes = layout.stage_sizes()
    terms = []
    for s, stage in enumerate(net.stages):
        for b, block in enumerate(stage):
            size = sizes[s][0] if b == 0 else sizes[s][1]
            x = torch.randn(batch_size, block.in_channels, size, size, device=device)
            table = np.zeros((len(DEPTHS), len(KERNELS), len(EXPANDS)))
            for j, k in enumerate(KERNELS):
                for m, e in enumerate(EXPANDS):
                    ms = _median_ms(block.export(k, e).to(device).eval(), x, repeats, warmup)
                    for i, d in enumerate(DEPTHS):
                        table[i, j, m] = ms if b < d else 0.0
            terms.append({"labels": [f"d{s + 1}", f"k{s + 1}_{b + 1}", f"e{s + 1}_{b + 1}"], "table": table.tolist()})
    x = torch.randn(batch_size, layout.in_channels, layout.image_size, layout.image_size, device=device)
    front = nn.Sequential(net.stem, net.first_block.export(3, 1).to(device)).eval()
    last = layout.stages()[-1].width
    y = torch.randn(batch_size, last, sizes[-1][1], sizes[-1][1], device=device)
    constant = _median_ms(front, x, repeats, warmup) + _median_ms(net.forward_head, y, repeats, warmup)
    return {"format": LUT_FORMAT, "space": space.name, "task": dict(task), "device": str(device),
            "batch_size": batch_size, "repeats": repeats, "constant_ms": constant, "terms": terms}

