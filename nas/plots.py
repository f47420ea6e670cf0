"""Figures written into run directories (matplotlib, Agg backend, atomic PNG writes)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .io import atomic_write


def pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write `fig` as a PNG atomically and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    pyplot().close(fig)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()), mode="wb")
    return path


def alpha_history(path: Path, report: dict[str, Any]) -> Path:
    """One panel per decision: the relaxed weight of every candidate over the epochs."""
    plt = pyplot()
    history, labels, candidates = report["alpha_history"], report["labels"], report["candidates"]
    cols = min(3, len(labels))
    rows = -(-len(labels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), dpi=100, squeeze=False, sharex=True)
    epochs = list(range(1, len(history) + 1))
    for i, (ax, label) in enumerate(zip(axes.flat, labels)):
        for k, name in enumerate(candidates[i]):
            ax.plot(epochs, [epoch[i][k] for epoch in history], marker=".", label=name)
        ax.set_title(label, fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(labels):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("epoch")
    fig.supylabel("architecture weight")
    fig.suptitle(f"{report['strategy']}: derived {report['derived']}", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def sampled_flops(path: Path, sampled: list[int], reference: list[int], extremes: dict[str, int],
                  title: str) -> Path:
    """Histogram of the FLOPs of the paths a run trained over a uniform reference sample of the space (shares
    of each sample per bin, same bins), with a vertical line per extreme arch: where a sampler spends its steps
    compared with uniform sampling (ShiftNAS's diagnosis: uniform concentrates on middle complexity)."""
    import numpy as np

    plt = pyplot()
    top = max(max(sampled), max(reference, default=0), *extremes.values())
    scale, unit = next((s, u) for s, u in ((1e9, "G"), (1e6, "M"), (1e3, "K"), (1.0, "")) if top >= 10 * s or s == 1.0)
    values = np.asarray(sampled, dtype=float) / scale
    ref = np.asarray(reference, dtype=float) / scale
    marks = {name: value / scale for name, value in extremes.items()}
    lo = min(values.min(), ref.min() if ref.size else values.min(), *marks.values())
    hi = max(values.max(), ref.max() if ref.size else values.max(), *marks.values())
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if ref.size:
        ax.hist(ref, bins=bins, weights=np.full(ref.size, 1.0 / ref.size), color="0.6", alpha=0.6,
                label=f"uniform reference ({ref.size:,} archs)")
    ax.hist(values, bins=bins, weights=np.full(values.size, 1.0 / values.size), histtype="step", linewidth=1.8,
            color="C0", label=f"trained paths ({values.size:,})")
    for (name, value), color in zip(marks.items(), ("C3", "C2", "C1", "C4")):
        ax.axvline(value, color=color, linestyle="--", linewidth=1.2, label=f"{name} ({value:,.2f} {unit})")
    ax.set_xlabel(f"FLOPs per image ({unit} multiply-adds)".replace("( ", "("))
    ax.set_ylabel("share of samples")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def split_distances(path: Path, splits: list[tuple[str, dict[str, Any]]]) -> Path:
    """One panel per split of a few-shot run: the mean gradient distance between the candidates of the unit it was
    split along (GM-NAS's 1 - cos), candidates ordered group by group, with the cut between the groups drawn."""
    import numpy as np

    plt = pyplot()
    cols = min(3, len(splits))
    rows = -(-len(splits) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), dpi=100, squeeze=False)
    for ax, (node_id, record) in zip(axes.flat, splits):
        unit = record["unit"]
        scored = record["scores"][unit]
        names = [str(c) for c in scored["candidates"]]
        order = [names.index(str(c)) for group in record["groups"] for c in group]
        D = np.asarray(scored["distance"])[np.ix_(order, order)]
        image = ax.imshow(D, cmap="viridis")
        ax.set_xticks(range(len(order)), [names[i] for i in order], rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(order)), [names[i] for i in order], fontsize=7)
        edge = len(record["groups"][0]) - 0.5
        ax.axhline(edge, color="white", lw=1.5)
        ax.axvline(edge, color="white", lw=1.5)
        ax.set_title(f"sub-supernet {node_id}, epoch {record['epoch']}: {unit}\ncut {scored['cut']:.3f}, "
                     f"within {scored['within']:.3f}", fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    for ax in list(axes.flat)[len(splits):]:
        ax.axis("off")
    fig.suptitle("gradient distance of the split unit's candidates (groups in order, white lines: the cut)",
                 fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def controller_hidden_states(path: Path, pairs: dict[str, dict[str, Any]], labels: dict[str, str]) -> Path:
    """One row per controller (random, trained), one panel per measure: the L2 distance of two archs' hidden
    states against how alike the archs are, over every pair (the hidden-state analysis of Adam & Lorraine)."""
    plt = pyplot()
    measures = [m for m in labels if m in next(iter(pairs.values()))]
    fig, axes = plt.subplots(len(pairs), len(measures), figsize=(3.4 * len(measures), 2.9 * len(pairs)), dpi=100,
                             squeeze=False)
    for r, (kind, values) in enumerate(pairs.items()):
        for c, measure in enumerate(measures):
            ax = axes[r][c]
            ax.scatter(values[measure], values["hidden_l2"], s=3, alpha=0.3)
            ax.set_xlabel(labels[measure])
            if c == 0:
                ax.set_ylabel(f"{kind}\nhidden-state L2 distance")
    fig.tight_layout()
    return save_figure(fig, path)


def distillation_curves(path: Path, rows: list[dict[str, Any]], title: str = "") -> Path:
    """AutoDistil's loss curves: the held-out distillation loss of every SuperLM's largest (solid) and smallest
    (dashed) student over training steps, one colour per sub-space, log scale."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=100)
    names = list(dict.fromkeys(row["subspace"] for row in rows))
    for index, name in enumerate(names):
        mine = [row for row in rows if row["subspace"] == name]
        steps = [row["step"] for row in mine]
        colour = f"C{index}"
        ax.plot(steps, [row["heldout_largest"] for row in mine], "-o", color=colour, ms=3, label=f"{name} largest")
        ax.plot(steps, [row["heldout_smallest"] for row in mine], "--s", color=colour, ms=3,
                label=f"{name} smallest")
    ax.set_yscale("log")
    ax.set_xlabel("training step of the SuperLM")
    ax.set_ylabel("held-out distillation loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title or "self-attention relation distillation, inherited weights", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def student_ranking(path: Path, rows: list[dict[str, Any]], tau: float | None) -> Path:
    """Inherited-weight vs stand-alone held-out distillation loss of sampled students, one colour per sub-space."""
    from matplotlib.ticker import NullFormatter

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 4.2), dpi=100)
    order = ["base", "small", "tiny", "full"]  # the colours of distillation_curves for the shipped sub-spaces
    names = sorted(dict.fromkeys(r["subspace"] for r in rows), key=lambda n: (order.index(n) if n in order else 9, n))
    for index, name in enumerate(names):
        mine = [r for r in rows if r["subspace"] == name]
        ax.scatter([r["inherited_loss"] for r in mine], [r["standalone_loss"] for r in mine], s=18, color=f"C{index}",
                   label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("held-out loss, inherited weights (SuperLM)")
    ax.set_ylabel("held-out loss, trained stand-alone")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(f"Kendall tau {tau:.3f}" if tau is not None else "students", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
