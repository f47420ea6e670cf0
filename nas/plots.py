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
