"""PA&DA: jointly sampling PAths and DAta (Lu et al., CVPR 2023; specs/ALGORITHMS.md §1).

Importance sampling lowers the variance of the supernet's gradient estimate: paths are drawn with probabilities
proportional to their candidates' gradient norms, training samples proportionally to the norm of the loss
gradient at the logits, each mixed with the uniform distribution by a coefficient that grows over training.

Per step (`after_backward`; gradients read AFTER clipping by default, as the reference does):
- path: for every parametric candidate o in the sampled arch, n_o = sum over cells and decisions choosing o of
  the candidate's gradient norm (sum of per-tensor norms, or their l2) divided by the number of decisions choosing
  o; G[o] <- (G[o] + n_o) / 2, with G reset to 0 at every epoch start (EMA 0.5 from 0, reference). A step in
  which n_o is 0 leaves G[o] alone (the reference's `if tmp_norm != 0`): a conv sampled only on edges that
  cannot reach the output gets no gradient, and that says nothing about its importance;
- data: s_i = ||softmax(logits_i) - onehot(y_i)||, no extra backward; a sample drawn twice in an epoch keeps the
  mean of its old and new score.
At the end of epoch e (0-based), tau = e / E:  p <- tau * G / sum(G) + (1 - tau) / K  and
q <- tau * s / sum(s) + (1 - tau) / N; epoch e + 1 trains on N indices drawn from q with replacement.

A candidate's gradient comes from `supernet.choice_slices()` (`supernets.Supernet`): whole parameters on NB201,
DARTS and NAS-Bench-Macro (the parameter registry), slices of the shared tensors on MobileNet (centre taps for a
kernel, the first hidden channels for an expand ratio, the first blocks for a depth). Slices of one decision's
candidates overlap (kernel 3 is the centre of kernel 5), so per-candidate norms are not disjoint there; each is
the norm of what the network trains when that candidate is chosen. Only the decisions that are part of the
network count (`supernet.active_choices(arch)`: not the placeholder choices of blocks beyond a stage's depth).

Everything per step stays on the device (no host sync): norms come from `torch._foreach_norm` over views of the
gradients, and G and the scores are updated with scatter and `where` operations. The host reads p once per epoch
to sample paths.

Options (ALGORITHMS.md §1.8), defaults as the reference unless marked "ours":
- `param_free: zero` (reference): candidates without parameters (none, skip, pooling) have importance 0, so
  their probability decays to (1 - tau)/K (0.0016 in the last of 250 epochs). `floor` (ours) keeps every
  candidate at >= `p_min` (default half of uniform) and renormalises, so that they are still trained late.
- `grad_read: after_clip` (reference) reads the gradients the optimizer applies; `after_backward` (ours) reads
  them before the global clipping, computed as the clipped gradient divided by the engine's clip factor
  (`StepContext.clip_factor`), so no extra copy of the gradients and no extra hook are needed.
- `granularity: op_type` (one distribution per distinct candidate list, shared by every decision with that list:
  on NB201 one over ops for all edges, the reference; on MobileNet one over depths, one over kernels, one over
  expand ratios) or `edge_op` (ours: one distribution per decision; a different algorithm, labelled as such).
  Combinations a space refuses (`space.make` raises) are redrawn.
- `unseen: zero` (reference: samples not drawn this epoch score 0) or `keep_last` (ours: their last known score).
- `norm: sum` (reference: ||gW|| + ||gb||) or `l2` (ours); `ema: 0.5` (reference).
- `unbiased_weights: false` (reference: plain mean loss); true (ours) weights each sample by 1/(N q_j) and each
  path by prod over its active decisions of 1/(K p_{a_e}), each clipped to `max_weight`.
A space whose supernet names nothing per candidate (`capabilities.choice_gradients` of its registration) is refused
with the config, unless `sample_paths` is off: path sampling would silently be uniform there.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import torch

import supernets
from searchspaces import Arch, Space, SpaceError
from searchspaces.options import choice as one_of
from searchspaces.options import flag, integer, number
from supernets import ChoiceSlices

from .base import LossContext, StepContext, Strategy
from .registry import register_strategy


@register_strategy("PA&DA: paths and training samples drawn by gradient-norm importance (Lu et al. 2023)")
class PADAStrategy(Strategy):
    """PA&DA path and data importance sampling over any supernet (`supernets.Supernet.choice_slices()` names
    what each candidate trains)."""

    name = "pada"
    # Defaults are the reference's (ShunLu91/PA-DA, nasbench201/train_panda_201.py); "ours" marks this framework's.
    OPTIONS = {
        "granularity": one_of("op_type", "op_type (reference: one distribution per candidate list, on NB201 over ops "
                                         "for all edges) | edge_op (ours: one per decision)", ("op_type", "edge_op")),
        "param_free": one_of("zero", "zero (reference): parameter-free ops decay to (1-tau)/K | floor (ours): they "
                                     "keep >= p_min", ("zero", "floor")),
        "grad_read": one_of("after_clip", "after_clip (reference: the clipped gradients) | after_backward (ours: "
                                          "before the global clipping)", ("after_clip", "after_backward")),
        "p_min": number(0.0, "param_free=floor: the probability floor; 0 = half of uniform (0.5 / K)", 0.0, 1.0,
                        hi_open=True),
        "unseen": one_of("zero", "samples not drawn in an epoch: zero (reference) | keep_last (ours: their last "
                                 "score)", ("zero", "keep_last")),
        "norm": one_of("sum", "candidate gradient norm: sum (reference: ||gW|| + ||gb||) | l2 (ours)", ("sum", "l2")),
        "ema": number(0.5, "EMA of the candidates' gradient norms within an epoch (reference 0.5)", 0.0, 1.0,
                      hi_open=True),
        "unbiased_weights": flag(False, "reference: plain mean loss; true (ours): 1/(N q) and 1/(K p) weights, "
                                        "clipped to max_weight"),
        "max_weight": number(10.0, "unbiased_weights: the clip of each importance weight", 0.0, lo_open=True),
        "epochs": integer(0, "E of the schedule tau = e / E; 0 = train.epochs", 0),
        "sample_data": flag(True, "draw training samples by importance (false: the usual shuffle)"),
        "sample_paths": flag(True, "draw paths by importance (false: uniform paths)"),
    }

    def check_space(self, space: Space) -> None:
        """Path sampling needs per-candidate gradients; refuse a space whose supernet names none."""
        if self.opts["sample_paths"] and not supernets.entry(space.name).capabilities.choice_gradients:
            raise ValueError(self._no_gradients(space.name))

    @staticmethod
    def _no_gradients(space_name: str) -> str:
        return (f"PA&DA samples paths by per-candidate gradient norms, and the {space_name} supernet names no "
                "parameters or weight slices per candidate; set strategy.sample_paths=false to sample only data")

    # --- setup -----------------------------------------------------------------------------------
    def setup(self, supernet, space, seed: int, data: Any = None, epochs: int | None = None,
              cost_task: dict[str, Any] | None = None) -> None:
        super().setup(supernet, space, seed, data, epochs, cost_task)
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
        self.flat_of = {key: row * self.width + col for key, (row, col) in self.slot_of.items()}
        # Allowed slots: a restricted sub-space samples only inside its mask.
        self.allowed = np.zeros((self.rows, self.width), dtype=bool)
        for d, cands in zip(decisions, space.allowed):
            for c in cands:
                self.allowed[self.slot_of[(d.label, c)]] = True
        # What each (decision, candidate) trains, for the gradient norms: whole parameters (index ()) or slices of
        # shared ones; parametric slots. Only the decisions that are part of the network count.
        self.slices_of: ChoiceSlices = {}
        parametric = torch.zeros(self.rows, self.width, dtype=torch.bool)
        for key, entries in supernet.choice_slices().items():
            if entries and key in self.slot_of:
                self.slices_of[key] = list(entries)
                parametric[self.slot_of[key]] = True
        if self.opts["sample_paths"] and not self.slices_of:
            raise ValueError(self._no_gradients(space.name))
        self.parametric = parametric.flatten().to(device)
        self.active_choices = supernet.active_choices
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
        self._record_paths(ctx)
        self._record_data(ctx)

    def _record_paths(self, ctx: StepContext) -> None:
        grads: list[torch.Tensor] = []
        slots: list[int] = []
        counts = np.zeros(self.rows * self.width, dtype=np.float32)
        for key in self.active_choices(ctx.arch):
            slot = self.flat_of[key]
            counts[slot] += 1  # a dead edge counts, as in the reference (`sampled_arch.count(op)`)
            for p, index in self.slices_of.get(key, ()):
                if p.grad is not None:  # None: the candidate fed a node that cannot reach the output (norm 0)
                    grads.append(p.grad[index] if index else p.grad)
                    slots.append(slot)
        if not grads:
            return
        norms = torch.stack(torch._foreach_norm(grads)).float()
        if self.opts["grad_read"] == "after_backward" and isinstance(ctx.clip_factor, torch.Tensor):
            norms = norms / ctx.clip_factor.to(norms)  # undo the clipping: the norms before it
        slot_index = self._to_device(np.array(slots))
        if self.opts["norm"] == "l2":
            total = torch.zeros_like(self.G).index_add_(0, slot_index, norms * norms).sqrt()
        else:
            total = torch.zeros_like(self.G).index_add_(0, slot_index, norms)
        chosen = self._to_device(counts)
        n = total / chosen.clamp(min=1)
        # Update only candidates of this path with a (finite) gradient: n = 0 means every decision choosing the
        # candidate was dead (reference: `if tmp_norm != 0`); a non-finite n (float16 overflow, whose step the
        # loss scaler skips) would poison G for the rest of the epoch.
        update = (chosen > 0) & self.parametric & torch.isfinite(n) & (n > 0)
        ema = float(self.opts["ema"])
        self.G = torch.where(update, ema * self.G + (1 - ema) * n, self.G)

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
        for label, choice in self.active_choices(arch):  # placeholder choices are not part of the path
            row, col = self.slot_of[(label, choice)]
            k = int(self.allowed[row].sum())
            path_w *= 1.0 / (k * max(float(self.p_host[row, col]), 1e-12))
        return (data_w * min(path_w, cap)).float()

    def loss(self, ctx: LossContext) -> torch.Tensor:
        """The label cross-entropy, weighted per sample by `sample_weights` when `unbiased_weights` is on."""
        weights = self.sample_weights(ctx.arch, ctx.index)
        return ctx.per_sample_loss.mean() if weights is None else (ctx.per_sample_loss * weights).mean()

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
        # Evidence of what the data sampler does (one host copy per epoch): the share of training samples drawn at
        # least once in the epoch just trained, the spread of their scores, and how concentrated the next epoch's
        # q is (its effective sample size over N; 1 = uniform).
        drawn = self.seen.float()
        seen_scores = self.scores[self.seen]
        spread = seen_scores.std() / seen_scores.mean().clamp(min=1e-12) if seen_scores.numel() > 1 \
            else torch.zeros((), device=self.q.device)
        q_max, coverage, ess, cv = torch.stack([
            self.q.max() * self.num_samples, drawn.mean(), 1.0 / (self.num_samples * (self.q * self.q).sum()),
            spread.float()]).tolist()
        stats.update({"q_max_over_uniform": q_max, "data_coverage": coverage, "q_ess_fraction": ess,
                      "score_cv": cv})
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
        allowed = torch.from_numpy(self.allowed.flatten()).to(device)
        if bool((self.p[~allowed] > 0).any()):  # a parent's state loaded into a few-shot child: keep its mask
            p = torch.where(allowed, self.p, torch.zeros_like(self.p)).view(self.rows, self.width)
            self.p = (p / p.sum(dim=1, keepdim=True)).flatten()
        self.p_host = self.p.view(self.rows, self.width).cpu().double().numpy()
