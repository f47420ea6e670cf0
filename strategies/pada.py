"""PA&DA: jointly sampling PAths and DAta (Lu et al., CVPR 2023; specs/ALGORITHMS.md §1).

Importance sampling lowers the variance of the supernet's gradient estimate: paths are drawn with probabilities
proportional to their candidates' gradient norms, training samples proportionally to the norm of the loss
gradient at the logits, each mixed with the uniform distribution by a coefficient that grows over training.

Per step (`after_backward`, gradients read AFTER clipping, as the reference does):
- path: for every parametric candidate o in the sampled arch, n_o = sum over cells and decisions choosing o of
  the candidate's gradient norm (sum of per-tensor norms, or their l2) divided by the number of decisions choosing
  o; G[o] <- (G[o] + n_o) / 2, with G reset to 0 at every epoch start (EMA 0.5 from 0, reference);
- data: s_i = ||softmax(logits_i) - onehot(y_i)||, no extra backward; a sample drawn twice in an epoch keeps the
  mean of its old and new score.
At the end of epoch e (0-based), tau = e / E:  p <- tau * G / sum(G) + (1 - tau) / K  and
q <- tau * s / sum(s) + (1 - tau) / N; epoch e + 1 trains on N indices drawn from q with replacement.

Everything per step stays on the device (no host sync): norms come from `torch._foreach_norm`, and G and the
scores are updated with scatter operations. The host reads p once per epoch to sample paths.

Decisions of this framework (ALGORITHMS.md §1.8), all configurable:
- `param_free: floor` (default): candidates without parameters (none, skip, pooling) have no gradient norm, so
  under the reference rule their probability decays to (1 - tau)/K (0.0016 in the last of 250 epochs) and they
  are hardly trained late. `floor` keeps every candidate at >= `p_min` (default half of uniform) and
  renormalises; `zero` is the reference behaviour.
- `granularity: op_type` (one distribution per distinct candidate list, shared by every decision with that list:
  on NB201 one over ops for all edges, the reference) or `edge_op` (one distribution per decision; a different
  algorithm, labelled as such). Combinations a space refuses (`space.make` raises) are redrawn.
- `unseen: zero` (reference: samples not drawn this epoch score 0) or `keep_last` (their last known score).
- `unbiased_weights: false` (reference: plain mean loss); true weights each sample by 1/(N q_j) and each path by
  prod_e 1/(K p_{a_e}), each clipped to `max_weight`.
- Entangled/elastic spaces: a candidate's gradient is that of its slice of a shared tensor; slices overlap, so
  per-candidate norms are not disjoint there.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import torch

from searchspaces import Arch, SpaceError

from .base import StepContext, Strategy


class PADAStrategy(Strategy):
    """PA&DA path and data importance sampling over any supernet exposing `choice_parameters()`."""

    name = "pada"
    OPTIONS = {
        "granularity": "op_type",
        "param_free": "floor",
        "p_min": 0.0,  # 0 = half of uniform (0.5 / K)
        "unseen": "zero",
        "norm": "sum",
        "ema": 0.5,
        "unbiased_weights": False,
        "max_weight": 10.0,
        "epochs": 0,  # the E of tau = e / E; 0 = train.epochs (set by the engine through `setup`)
        "sample_data": True,
        "sample_paths": True,
    }
    CHOICES = {"granularity": ("op_type", "edge_op"), "param_free": ("floor", "zero"), "unseen": ("zero", "keep_last"),
               "norm": ("sum", "l2")}

    def __init__(self, **opts: Any):
        super().__init__(**opts)
        for key, allowed in self.CHOICES.items():
            if self.opts[key] not in allowed:
                raise ValueError(f"strategy.{key}={self.opts[key]!r} is not valid; accepted: {', '.join(allowed)}")
        if not 0.0 <= float(self.opts["ema"]) < 1.0:
            raise ValueError(f"strategy.ema={self.opts['ema']!r} is not valid; accepted: a number from 0 to 1")

    # --- setup -----------------------------------------------------------------------------------
    def setup(self, supernet, space, seed: int, data: Any = None, epochs: int | None = None) -> None:
        super().setup(supernet, space, seed, data)
        self.seed = seed
        self.total_epochs = int(self.opts["epochs"] or epochs or 1)
        device = next(supernet.parameters()).device
        self.device = device
        decisions = space.decisions
        # A candidate's slot (row, column) in the distribution. op_type: one row per distinct candidate list, shared
        # by every decision with that list (NB201: one row of ops for all edges, the reference; DARTS: one row of
        # ops, and rows of input choices). edge_op: one row per decision.
        if self.opts["granularity"] == "op_type":
            lists = list(dict.fromkeys(d.candidates for d in decisions))
            self.row_values: list[tuple[Hashable, ...]] = lists
            self.slot_of = {(d.label, c): (lists.index(d.candidates), d.candidates.index(c))
                            for d in decisions for c in d.candidates}
        else:
            self.row_values = [d.candidates for d in decisions]
            self.slot_of = {(d.label, c): (i, d.candidates.index(c))
                            for i, d in enumerate(decisions) for c in d.candidates}
        self.rows = len(self.row_values)
        self.width = max(len(values) for values in self.row_values)
        # Allowed slots: a restricted sub-space samples only inside its mask.
        self.allowed = np.zeros((self.rows, self.width), dtype=bool)
        for d, cands in zip(decisions, space.allowed):
            for c in cands:
                self.allowed[self.slot_of[(d.label, c)]] = True
        # Parameters of each (decision, candidate), for the gradient norms; parametric slots.
        self.params_of: dict[tuple[str, Hashable], list[torch.nn.Parameter]] = {}
        parametric = torch.zeros(self.rows, self.width, dtype=torch.bool)
        for (label, choice), params in supernet.choice_parameters().items():
            if params:
                self.params_of[(label, choice)] = params
                parametric[self.slot_of[(label, choice)]] = True
        self.parametric = parametric.flatten().to(device)
        # Distributions and accumulators, flattened [rows * width]; p starts uniform over the allowed candidates.
        self.p = torch.tensor(self._uniform(), dtype=torch.float32, device=device).flatten()
        self.p_host = self._uniform()
        self.G = torch.zeros(self.rows * self.width, dtype=torch.float32, device=device)
        # Data: per training-set position scores; map source index -> position.
        train = getattr(data, "train", None)
        if train is None:
            raise ValueError("PA&DA needs the training data (a DataBundle with a train split) in setup")
        self.num_samples = len(train)
        indices = train.indices.to(device)
        self.position_of = torch.full((int(indices.max().item()) + 1,), -1, dtype=torch.long, device=device)
        self.position_of[indices] = torch.arange(self.num_samples, device=device)
        self.scores = torch.zeros(self.num_samples, dtype=torch.float32, device=device)
        self.seen = torch.zeros(self.num_samples, dtype=torch.bool, device=device)
        self.q = torch.full((self.num_samples,), 1.0 / self.num_samples, dtype=torch.float32, device=device)
        self.tau = 0.0

    def _uniform(self) -> np.ndarray:
        """Uniform over the allowed candidates of each row, [rows, width]."""
        return self.allowed / self.allowed.sum(axis=1, keepdims=True)

    def _flat(self, label: str, choice: Hashable) -> int:
        row, col = self.slot_of[(label, choice)]
        return row * self.width + col

    # --- sampling --------------------------------------------------------------------------------
    def sample(self) -> Arch:
        if not self.opts["sample_paths"]:
            return self.space.sample(self.rng)
        for _ in range(1000):  # resample combinations the space does not accept (e.g. a DARTS node's two inputs)
            choices = []
            for d, cands in zip(self.space.decisions, self.space.allowed):
                weights = np.array([self.p_host[self.slot_of[(d.label, c)]] for c in cands])
                total = weights.sum()
                probs = weights / total if total > 0 else np.full(len(cands), 1.0 / len(cands))
                choices.append(cands[int(self.rng.choice(len(cands), p=probs))])
            try:
                return self.space.make(choices)
            except SpaceError:
                continue
        raise SpaceError(f"PA&DA drew no arch that space {self.space.name!r} accepts in 1000 tries")

    def epoch_order(self, epoch: int, num_samples: int) -> torch.Tensor | None:
        """Epoch 0 (and data sampling off): None, an ordinary shuffle. Later: N draws with replacement from q."""
        self.G.zero_()  # the path importance is an EMA from 0 within each epoch (reference)
        self.seen.zero_()
        if epoch == 0 or not self.opts["sample_data"]:
            return None
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, 0xDA7A, epoch])
                                                      .generate_state(1)[0]))
        return torch.multinomial(self.q.float().cpu(), num_samples, replacement=True, generator=generator).to(
            self.device)

    # --- per step --------------------------------------------------------------------------------
    def after_backward(self, ctx: StepContext) -> None:
        self._record_paths(ctx.arch)
        self._record_data(ctx)

    def _record_paths(self, arch: Arch) -> None:
        grads: list[torch.Tensor] = []
        slots: list[int] = []
        counts = np.zeros(self.rows * self.width)
        for label, choice in arch.items():
            slot = self._flat(label, choice)
            counts[slot] += 1
            for p in self.params_of.get((label, choice), ()):
                if p.grad is not None:  # None: the candidate fed a node that cannot reach the output (norm 0)
                    grads.append(p.grad)
                    slots.append(slot)
        if not grads:
            return
        norms = torch.stack(torch._foreach_norm(grads)).float()
        slot_index = self._to_device(np.array(slots))
        if self.opts["norm"] == "l2":
            total = torch.zeros_like(self.G).index_add_(0, slot_index, norms * norms).sqrt()
        else:
            total = torch.zeros_like(self.G).index_add_(0, slot_index, norms)
        used = self._to_device(counts > 0) & self.parametric
        n = total / self._to_device(np.maximum(counts, 1).astype(np.float32))
        ema = float(self.opts["ema"])
        self.G = torch.where(used, ema * self.G + (1 - ema) * n, self.G)

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        """A small host array on the device without waiting for the device (asynchronous copy on CUDA)."""
        return torch.from_numpy(array).to(self.device, non_blocking=True)

    def _record_data(self, ctx: StepContext) -> None:
        logits = ctx.logits.float()
        residual = torch.softmax(logits, dim=1)
        residual[torch.arange(len(ctx.y), device=residual.device), ctx.y] -= 1.0
        score = residual.norm(dim=1)
        pos = self.position_of[ctx.index]
        old, seen = self.scores[pos], self.seen[pos]
        self.scores[pos] = torch.where(seen, (old + score) / 2, score)
        self.seen[pos] = True

    def sample_weights(self, arch: Arch, index: torch.Tensor) -> torch.Tensor | None:
        """Importance weights 1/(N q_j) * prod_e 1/(K p_{a_e}) when `unbiased_weights`; None otherwise."""
        if not self.opts["unbiased_weights"]:
            return None
        cap = float(self.opts["max_weight"])
        data_w = (1.0 / (self.num_samples * self.q[self.position_of[index]])).clamp(max=cap)
        path_w = 1.0
        for label, choice in arch.items():
            row, col = self.slot_of[(label, choice)]
            k = int(self.allowed[row].sum())
            path_w *= 1.0 / (k * max(float(self.p_host[row, col]), 1e-12))
        return (data_w * min(path_w, cap)).float()

    # --- epoch end -------------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        tau = epoch / self.total_epochs
        self.tau = tau
        uniform = torch.tensor(self._uniform(), dtype=torch.float32, device=self.G.device)
        G = self.G.view(self.rows, self.width)
        sums = G.sum(dim=1, keepdim=True)
        importance = torch.where(sums > 0, G / sums.clamp(min=1e-300), uniform)  # 0/0: uniform (ALGORITHMS 1.8)
        p = tau * importance + (1 - tau) * uniform
        p = torch.where(uniform > 0, p, torch.zeros_like(p))
        if self.opts["param_free"] == "floor":
            floor = float(self.opts["p_min"]) or None
            floors = torch.where(uniform > 0, torch.full_like(p, floor) if floor else 0.5 * uniform, 0.0)
            below = p < floors  # lift these to the floor, scale the others into the remaining mass
            free = 1.0 - (floors * below).sum(dim=1, keepdim=True)
            rest = (p * ~below).sum(dim=1, keepdim=True).clamp(min=1e-12)
            p = torch.where(below, floors, p * free / rest)
        p = p / p.sum(dim=1, keepdim=True)
        self.p = p.flatten()
        self.p_host = p.cpu().double().numpy()  # the one host copy per epoch
        scores = torch.where(self.seen, self.scores, torch.zeros_like(self.scores)) \
            if self.opts["unseen"] == "zero" else self.scores
        total = scores.sum()
        importance = scores / total if total > 0 else torch.full_like(scores, 1.0 / self.num_samples)
        self.q = tau * importance + (1 - tau) / self.num_samples
        stats = {"pada_tau": tau}
        if self.opts["granularity"] == "op_type":  # the probability of every candidate value, row by row
            for row, values in enumerate(self.row_values):
                prefix = "p_" if self.rows == 1 else f"p{row}_"
                stats.update({f"{prefix}{value}": float(self.p_host[row, col]) for col, value in enumerate(values)})
        stats["q_max_over_uniform"] = float(self.q.max().item() * self.num_samples)
        return stats

    # --- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update({"p": self.p.cpu(), "G": self.G.cpu(), "scores": self.scores.cpu(), "seen": self.seen.cpu(),
                      "q": self.q.cpu(), "tau": self.tau})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        device = self.G.device
        self.p, self.G = state["p"].to(device), state["G"].to(device)
        self.scores, self.seen, self.q = state["scores"].to(device), state["seen"].to(device), state["q"].to(device)
        self.tau = float(state["tau"])
        self.p_host = self.p.view(self.rows, self.width).cpu().double().numpy()
