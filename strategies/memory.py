"""The memory buffer of Adam & Lorraine (specs/ALGORITHMS.md §5.3): token sequences of archs the controller drew
earlier, for a reconstruction loss that makes the controller's hidden state carry its past decisions.

Rows are the exact token sequences drawn at sampling time. While the buffer has room, new rows are appended until
it is full (the rest of that batch is dropped); once full, each `add` overwrites `replace_rows` rows with as many
randomly chosen new ones: `random` picks the rows to overwrite at random (the method as described), `tail` always
overwrites the last `replace_rows` rows, as the reference code does (`buffer[:-100]` kept), so every earlier row
stays forever.
"""

from __future__ import annotations

import numpy as np
import torch

REPLACE_MODES = ("random", "tail")


class MemoryBuffer:
    """At most `capacity` sequences of `length` tokens (int64, on the host)."""

    def __init__(self, capacity: int, length: int, replace: str = "random", replace_rows: int = 100):
        if replace not in REPLACE_MODES:
            raise ValueError(f"buffer replacement {replace!r} is not one of {', '.join(REPLACE_MODES)}")
        self.capacity, self.length, self.replace, self.replace_rows = int(capacity), int(length), replace, int(
            replace_rows)
        self.rows = torch.zeros((0, self.length), dtype=torch.long)

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, tokens: np.ndarray, rng: np.random.Generator) -> int:
        """Store a batch of drawn sequences ([N, length]); returns how many rows were written."""
        new = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        if new.ndim != 2 or new.shape[1] != self.length:
            raise ValueError(f"the buffer stores sequences of {self.length} tokens, got shape {tuple(new.shape)}")
        room = self.capacity - len(self.rows)
        if room > 0:
            self.rows = torch.cat([self.rows, new[:room]])
            return min(room, len(new))
        k = min(self.replace_rows, len(new), self.capacity)
        incoming = new[torch.from_numpy(rng.choice(len(new), size=k, replace=False))]
        if self.replace == "tail":
            self.rows = torch.cat([self.rows[: self.capacity - k], incoming])
        else:
            slots = torch.from_numpy(rng.choice(self.capacity, size=k, replace=False))
            self.rows[slots] = incoming
        return k

    def draw(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        """`n` distinct stored rows at random (all of them when fewer are stored)."""
        picked = rng.choice(len(self.rows), size=min(n, len(self.rows)), replace=False)
        return self.rows[torch.from_numpy(np.sort(picked))]

    def state_dict(self) -> dict:
        return {"rows": self.rows.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.rows = state["rows"].clone().long()
