"""ShiftNAS: complexity-aware probability shift for supernet training (specs/ALGORITHMS.md §4).

No reference code exists; this is the framework's design from the paper's description (§4.1), every value
ours (§4.2). One training step:

1. draw a complexity bin `k ~ P` (K equal-width FLOPs intervals over [F_min, F_max] of the (sub)space);
2. draw a target `f ~ U(bin k)` and let the architecture generator (AG) propose a subnet for (k, f): an LSTM
   that emits one decision per step with straight-through Gumbel-softmax samples (`generator: true`); or,
   with `generator: false`, a uniform arch of the bin from a per-bin pool (the first milestone of §4.2,
   `BinRejectionSampler`, which isolates the probability shift from the generator);
3. train the supernet on that subnet. With the AG, the engine's single backward of the cross-entropy also
   reaches the AG through the matrix-mapping masks of `supernets.MobileNetSupernet` (the subnet still runs at
   its real size; masks are 1 on everything it computes), and the AG adds
   `flops_weight * |FLOPs(masks) - f| / f` with FLOPs differentiable through the same one-hot vectors
   (`space.cost_terms`: multilinear, exact at one-hot). The AG is trained with Adam after every step.
   `flops_weight` defaults to 5: with 1 the cross-entropy pulled the AG off its bins in joint training.
4. Probability shift: per bin an EMA (0.9) of the training loss of subnets whose *actual* FLOPs fall in the
   bin; every `window` steps `V_k = L_k(previous window end) - L_k(this window end)` (bins without samples in
   either window: 0), normalised by `max |V|`; `phi += eta * P * (V - <P, V>)` (gradient ascent on
   `sum_k P_k V_k`), or `rule: boltzmann`, `phi = V / temperature`. `P = (1 - uniform_mix) * softmax(phi) +
   uniform_mix / K`, so every bin keeps at least `uniform_mix / K`.

Design choices worth knowing:
- The AG runs on the host (CPU): its samples decide tensor shapes, which the host needs anyway, so no device
  sync is added per step; its masks travel to the device with the batch.
- Bins are over the analytic FLOPs of the run's task (width multiplier, stride schedule, image size).
- The per-bin pools (generator off) come from `pool` uniform samples, topped up for bins that uniform sampling
  rarely reaches (the extremes) with samples tilted towards small or large candidates; within a bin the pick
  is uniform over the pool, so close to uniform over the bin's archs, not exactly.
- Before training, the AG learns the FLOPs term alone for `generator_warmup` steps (our addition), so the
  bins it is asked for are the bins it samples from the first step on.
- `derive(max_flops)` queries the AG for a budget (§4.2 deployment): the bin containing the target, greedy
  decoding, kept when its FLOPs are within `tol` below the budget; otherwise the arch with the most FLOPs
  not above it among `derive_samples` Gumbel samples, asking the lower bins in turn if the AG overshoots; None
  when nothing fits, so the pipeline falls back to a constrained evolutionary search with inherited weights.
  BN is recalibrated when the arch is scored.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from searchspaces import Arch, Space
from searchspaces.options import choice, flag, integer, number
from supernets import ArchWeights

from .base import StepContext, Strategy
from .registry import register_strategy


class FlopsModel:
    """Analytic FLOPs of a (sub)space for one task, vectorised over candidate-index arrays, with bin edges."""

    def __init__(self, space: Space, task: dict[str, Any], bins: int, pool: np.ndarray | None = None):
        self.space, self.task = space, task
        self.terms = None
        if "flops" in space.cost_term_kinds:
            constant, terms = space.cost_terms("flops", **task)
            self.constant = float(constant)
            self.terms = [([space.label_index(label) for label in labels], table.astype(np.float64))
                          for labels, table in terms]
        ends = [float(space.flops(space.smallest(**task), **task)), float(space.flops(space.largest(**task), **task))]
        if pool is not None and len(pool):
            pool_flops = self.of_codes(pool)
            ends += [float(pool_flops.min()), float(pool_flops.max())]
        self.lo, self.hi = min(ends), max(ends)
        if self.hi <= self.lo:
            raise ValueError(f"space {space.name!r} has a single FLOPs value; ShiftNAS needs a range to bin")
        self.edges = np.linspace(self.lo, self.hi, bins + 1)

    def of_codes(self, codes: np.ndarray) -> np.ndarray:
        """FLOPs of every row of an `[n, decisions]` candidate-index array."""
        codes = np.asarray(codes)
        if self.terms is None:
            return np.array([self.space.flops(self.space.decode(row), **self.task) for row in codes], dtype=float)
        total = np.full(len(codes), self.constant)
        for columns, table in self.terms:
            total += table[tuple(codes[:, c] for c in columns)]
        return total

    def relaxed(self, weights: torch.Tensor) -> torch.Tensor:
        """Differentiable FLOPs of relaxed one-hot vectors `weights[..., decision, candidate]` (exact at one-hot)."""
        if self.terms is None:
            raise ValueError(f"space {self.space.name!r} has no cost_terms; ShiftNAS's generator needs them "
                             "(use strategy.generator=false)")
        total = weights.new_full(weights.shape[:-2], self.constant)
        letters = "abcdefgh"
        for columns, table in self.terms:
            vectors = [weights[..., c, :table.shape[i]] for i, c in enumerate(columns)]
            spec = ",".join(f"...{x}" for x in letters[: len(columns)]) + "," + letters[: len(columns)] + "->..."
            total = total + torch.einsum(spec, *vectors, torch.as_tensor(table, dtype=weights.dtype))
        return total

    def bin_of(self, flops: np.ndarray | float) -> np.ndarray:
        return np.clip(np.searchsorted(self.edges, flops, side="right") - 1, 0, len(self.edges) - 2)


def tilted_codes(space: Space, rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` samples whose candidates lean towards the first (t near 0) or last (t near 1) allowed candidate of
    every decision, t uniform per sample: they reach the cost extremes that uniform sampling rarely does."""
    tilt = 4.0 * (2.0 * rng.random(n) - 1.0)
    cols = []
    for d, allowed in zip(space.decisions, space.allowed):
        idx = np.array([d.candidates.index(c) for c in allowed])
        pos = np.arange(len(idx)) / max(len(idx) - 1, 1)
        logits = tilt[:, None] * pos[None, :]
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        pick = (probs.cumsum(1) < rng.random(n)[:, None]).sum(1).clip(0, len(idx) - 1)
        cols.append(idx[pick])
    return np.stack(cols, axis=1)


class ArchGenerator(nn.Module):
    """LSTM architecture generator conditioned on a complexity bin and a normalised target FLOPs.

    Step 0 reads `embed(bin) + W * target`; step t > 0 reads the embedding of the previous one-hot choice. One
    linear head per decision; disallowed candidates are masked out.
    """

    def __init__(self, space: Space, bins: int, hidden: int = 64):
        super().__init__()
        self.sizes = [len(d.candidates) for d in space.decisions]
        width = max(self.sizes)
        self.bin_embed = nn.Embedding(bins, hidden)
        self.target_proj = nn.Linear(1, hidden)
        self.cell = nn.LSTMCell(hidden, hidden)
        self.heads = nn.ModuleList(nn.Linear(hidden, n) for n in self.sizes)
        self.choice_embed = nn.ModuleList(nn.Linear(n, hidden, bias=False) for n in self.sizes)
        self.register_buffer("allowed", torch.from_numpy(space.mask_matrix()[:, :width].copy()), persistent=False)
        self.width = width

    def forward(self, bins: torch.Tensor, targets: torch.Tensor, tau: float, generator: torch.Generator | None,
                greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns straight-through one-hot weights `[batch, decisions, width]` and chosen indices
        `[batch, decisions]`."""
        x = self.bin_embed(bins) + self.target_proj(targets[:, None])
        state = None
        weights, chosen = [], []
        for i, n in enumerate(self.sizes):
            h, c = self.cell(x, state)
            state = (h, c)
            logits = self.heads[i](h).masked_fill(~self.allowed[i, :n], float("-inf"))
            if greedy:
                index = logits.argmax(1)
                y = F.one_hot(index, n).to(logits.dtype)
            else:
                u = torch.rand(logits.shape, generator=generator).clamp_(1e-10, 1.0 - 1e-7)
                soft = torch.softmax((logits - torch.log(-torch.log(u))) / tau, dim=1)
                index = soft.argmax(1)
                y = F.one_hot(index, n).to(soft.dtype) - soft.detach() + soft
            weights.append(F.pad(y, (0, self.width - n)))
            chosen.append(index)
            x = self.choice_embed[i](y)
        return torch.stack(weights, 1), torch.stack(chosen, 1)


@register_strategy("ShiftNAS: FLOPs bins, a shifted bin distribution and an LSTM arch generator per bin (§4)")
class ShiftNASStrategy(Strategy):
    """ShiftNAS (Su et al., ICCV 2023), as designed in specs/ALGORITHMS.md §4.2."""

    name = "shiftnas"
    OPTIONS = {
        "bins": integer(6, "K: equal-width FLOPs bins over the (sub)space", 2),
        "uniform_mix": number(0.5, "P = (1 - m) softmax(phi) + m / K: every bin keeps probability >= m / K", 0.0, 1.0),
        "window": integer(500, "steps between probability shifts", 1),
        "ema": number(0.9, "decay of the per-bin EMA of the training loss", 0.0, 1.0, hi_open=True),
        "rule": choice("gradient", "gradient (phi += eta * P * (V - <P, V>)) | boltzmann (P ~ exp(V / temperature))",
                       ("gradient", "boltzmann")),
        "eta": number(0.5, "rule=gradient: the step of the probability shift", 0.0),
        "temperature": number(1.0, "rule=boltzmann: the temperature", 0.0, lo_open=True),
        "generator": flag(True, "an LSTM arch generator per bin; false: a uniform arch of the drawn bin from a "
                                "per-bin pool"),
        "hidden": integer(64, "hidden size of the generator's LSTM", 1),
        "generator_lr": number(1e-3, "Adam learning rate of the generator", 0.0, lo_open=True),
        "tau_start": number(1.0, "Gumbel-softmax temperature of the generator at the start (linear over the epochs)",
                            0.0, lo_open=True),
        "tau_end": number(0.2, "Gumbel-softmax temperature at the end", 0.0, lo_open=True),
        "flops_weight": number(5.0, "lambda of |FLOPs - target| / target (1.0 let the cross-entropy pull the "
                                    "generator off its bins; README Results)", 0.0),
        "pool": integer(20000, "uniform samples binned for the pools (and the FLOPs range)", 1),
        "generator_warmup": integer(300, "FLOPs-only generator steps (batches of 32 targets) before training", 0),
        "tol": number(0.02, "derive: keep the greedy arch when its FLOPs are within tol below the budget", 0.0, 1.0,
                      hi_open=True),
        "derive_samples": integer(64, "generator samples per budget query (derive)", 0),
    }

    def mode(self) -> str:
        return "hard" if self.opts["generator"] else "single"

    def check_space(self, space: Space) -> None:
        if not space.has_flops:
            raise ValueError(f"ShiftNAS bins archs by FLOPs, and space {space.name!r} has no FLOPs count")
        if self.opts["generator"] and "flops" not in space.cost_term_kinds:
            raise ValueError(f"ShiftNAS's generator needs FLOPs as cost terms, which space {space.name!r} does not "
                             "give; set strategy.generator=false (a uniform arch of the drawn bin instead)")

    # --- setup -----------------------------------------------------------------------------------
    def setup(self, supernet, space: Space, seed: int, data: Any = None, epochs: int | None = None,
              cost_task: dict[str, Any] | None = None) -> None:
        super().setup(supernet, space, seed, data, epochs, cost_task)
        o, K = self.opts, int(self.opts["bins"])
        task = dict(self.cost_task)
        pool_rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5817]))
        pool = space.sample_codes(pool_rng, int(o["pool"]))
        self.flops_model = FlopsModel(space, task, K, pool)
        pool_bins = self.flops_model.bin_of(self.flops_model.of_codes(pool))
        short = [k for k in range(K) if (pool_bins == k).sum() < 50]
        if short:  # the extremes: top up with tilted samples
            extra = tilted_codes(space, pool_rng, int(o["pool"]))
            extra_bins = self.flops_model.bin_of(self.flops_model.of_codes(extra))
            keep = np.isin(extra_bins, short)
            pool, pool_bins = np.concatenate([pool, extra[keep]]), np.concatenate([pool_bins, extra_bins[keep]])
        self.pools = [pool[pool_bins == k] for k in range(K)]
        self.total_epochs = int(epochs or 1)
        self.phi = np.zeros(K)
        self.ema = torch.zeros(K)
        self.ema_seen = np.zeros(K, dtype=bool)
        self.previous: np.ndarray | None = None  # EMA snapshot at the previous window end
        self.previous_seen = np.zeros(K, dtype=bool)
        self.steps = 0
        self.tau = float(o["tau_start"])
        self.history: list[dict[str, Any]] = []
        self._pending: tuple[int, int, torch.Tensor | None] | None = None
        self.generator = self.gen_optimizer = None
        self.torch_rng = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 0x6E4]).generate_state(1)[0]))
        if o["generator"]:
            self.flops_model.relaxed(torch.zeros(len(space.decisions), max(len(d.candidates) for d in space.decisions)))
            init = torch.random.fork_rng(devices=[])
            with init:
                torch.manual_seed(int(np.random.SeedSequence([seed, 0xA6]).generate_state(1)[0]))
                self.generator = ArchGenerator(space, K, int(o["hidden"]))
            self.gen_optimizer = torch.optim.Adam(self.generator.parameters(), lr=float(o["generator_lr"]))
            self.warmup_error = self._warm_up(int(o["generator_warmup"]))
        self._stats_device: torch.device | None = None

    def _warm_up(self, steps: int, batch: int = 32) -> float | None:
        """Train the AG on the FLOPs term alone so that it follows its bin from the first training step (our
        addition to the joint training of §4.2). Returns the mean relative FLOPs error of the last step."""
        error = None
        for _ in range(steps):
            bins = torch.from_numpy(self.rng.integers(0, len(self.phi), size=batch))
            lo, hi = self.flops_model.edges[bins.numpy()], self.flops_model.edges[bins.numpy() + 1]
            targets = torch.from_numpy(lo + (hi - lo) * self.rng.random(batch)).float()
            span = self.flops_model.hi - self.flops_model.lo
            weights, _ = self.generator(bins, (targets - self.flops_model.lo) / span, self.tau, self.torch_rng)
            loss = ((self.flops_model.relaxed(weights) - targets).abs() / targets).mean()
            self.gen_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.gen_optimizer.step()
            error = float(loss.detach())
        return error

    # --- distribution ----------------------------------------------------------------------------
    def probabilities(self) -> np.ndarray:
        """The bin distribution P (floored by mixing with uniform)."""
        z = np.exp(self.phi - self.phi.max())
        m = float(self.opts["uniform_mix"])
        return (1.0 - m) * z / z.sum() + m / len(z)

    def _shift(self) -> None:
        current = self.ema.cpu().numpy().astype(float)
        seen = self.ema_seen.copy()
        variation = np.zeros(len(self.phi))
        if self.previous is not None:
            both = seen & self.previous_seen
            variation[both] = self.previous[both] - current[both]
        scale = np.abs(variation).max()
        if scale > 0:
            variation /= scale
            p = self.probabilities()
            if self.opts["rule"] == "gradient":
                self.phi += float(self.opts["eta"]) * p * (variation - p @ variation)
            else:
                self.phi = variation / float(self.opts["temperature"])
        self.previous, self.previous_seen = current, seen
        self.history.append({"step": self.steps, "variation": variation.round(6).tolist(),
                             "probabilities": self.probabilities().round(6).tolist(),
                             "loss_ema": current.round(6).tolist()})

    # --- sampling --------------------------------------------------------------------------------
    def _target(self, k: int) -> float:
        lo, hi = self.flops_model.edges[k], self.flops_model.edges[k + 1]
        return float(lo + (hi - lo) * self.rng.random())

    def sample(self) -> Arch | ArchWeights:
        k = int(self.rng.choice(len(self.phi), p=self.probabilities()))
        if self.generator is None:
            pool = self.pools[k]
            if len(pool) == 0:  # an empty bin (a gap in the cost distribution): the nearest non-empty one
                k = min((j for j in range(len(self.pools)) if len(self.pools[j])), key=lambda j: abs(j - k))
                pool = self.pools[k]
            codes = pool[int(self.rng.integers(0, len(pool)))]
            arch = self.space.decode(codes)
            actual = int(self.flops_model.bin_of(self.flops_model.of_codes(codes[None])[0]))
            self._pending = (actual, k, None)
            return arch
        target = self._target(k)
        self.gen_optimizer.zero_grad(set_to_none=True)
        weights, chosen = self.generator(torch.tensor([k]), torch.tensor([self._normalised(target)]), self.tau,
                                         self.torch_rng)
        weights, codes = weights[0], chosen[0].tolist()  # host tensors: no device sync
        flops = self.flops_model.relaxed(weights)
        penalty = float(self.opts["flops_weight"]) * (flops - target).abs() / target
        penalty.backward(retain_graph=True)
        self._flops_grads = [p.grad.clone() if p.grad is not None else None for p in self.generator.parameters()]
        actual = int(self.flops_model.bin_of(float(flops.detach())))
        self._pending = (actual, k, penalty.detach())
        return ArchWeights(weights, hard=tuple(codes))

    def _normalised(self, flops: float) -> float:
        return (flops - self.flops_model.lo) / (self.flops_model.hi - self.flops_model.lo)

    def after_backward(self, ctx: StepContext) -> None:
        """Update the bin's loss EMA (on the device, no sync), step the AG, shift P every `window` steps."""
        actual, _, _ = self._pending
        loss = ctx.per_sample_loss.mean().float()
        if self._stats_device is None:
            self._stats_device = loss.device
            self.ema = self.ema.to(loss.device)
        decay = float(self.opts["ema"])
        if self.ema_seen[actual]:
            self.ema[actual] = decay * self.ema[actual] + (1.0 - decay) * loss
        else:
            self.ema[actual] = loss
            self.ema_seen[actual] = True
        if self.gen_optimizer is not None:
            self._generator_step(ctx.loss_scale)
        self.steps += 1
        if self.steps % int(self.opts["window"]) == 0:
            self._shift()

    def _generator_step(self, loss_scale) -> None:
        """Adam step of the AG on FLOPs + cross-entropy gradients. Under float16 loss scaling the cross-entropy
        part arrives scaled (the engine unscales only the supernet's optimizer): it is unscaled here, and a step
        with non-finite gradients is skipped, as the engine's scaler skips the weights' step."""
        params = list(self.generator.parameters())
        scale = loss_scale()
        if scale != 1.0:
            for p, flops_grad in zip(params, self._flops_grads):
                if p.grad is not None:
                    base = flops_grad if flops_grad is not None else torch.zeros_like(p.grad)
                    p.grad = base + (p.grad - base) / scale
        if all(p.grad is None or bool(torch.isfinite(p.grad).all()) for p in params):
            self.gen_optimizer.step()

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        o = self.opts
        progress = min(1.0, (epoch + 1) / max(self.total_epochs - 1, 1))
        self.tau = float(o["tau_start"]) + (float(o["tau_end"]) - float(o["tau_start"])) * progress
        row = {f"shift_p{k}": float(p) for k, p in enumerate(self.probabilities())}
        if self.generator is not None:
            row["ag_tau"] = self.tau
        return row

    # --- deployment ------------------------------------------------------------------------------
    @torch.no_grad()
    def propose(self, target_flops: float, samples: int | None = None) -> list[Arch]:
        """The AG's archs for a FLOPs target: greedy decoding first, then Gumbel samples at the final tau."""
        if self.generator is None:
            raise ValueError("ShiftNAS proposes archs for a budget only with its generator (strategy.generator)")
        samples = int(self.opts["derive_samples"]) if samples is None else samples
        k = int(self.flops_model.bin_of(target_flops))
        target = torch.tensor([self._normalised(target_flops)])
        _, greedy = self.generator(torch.tensor([k]), target, self.tau, None, greedy=True)
        archs = [self.space.decode(greedy[0].tolist())]
        if samples:
            generator = torch.Generator().manual_seed(int(target_flops) % (2**31))
            _, chosen = self.generator(torch.full((samples,), k), target.expand(samples), float(self.opts["tau_end"]),
                                       generator)
            archs += [self.space.decode(row) for row in chosen.tolist()]
        return archs

    def derive(self, max_flops: float | None = None) -> Arch | None:
        """With a budget and a generator: the AG's greedy arch when its FLOPs are within `tol` below
        `max_flops`, else the proposed arch with the most FLOPs not above it, asking the bins below the budget's
        bin in turn when the AG overshoots; None when nothing fits (the pipeline then searches with inherited
        weights under the limit)."""
        if max_flops is None or self.generator is None:
            return None
        fm = self.flops_model
        below = [float(fm.edges[j:j + 2].mean()) for j in range(int(fm.bin_of(max_flops)) - 1, -1, -1)]
        for i, target in enumerate([float(max_flops)] + below):
            archs = self.propose(target)
            flops = fm.of_codes(np.array([a.codes() for a in archs]))
            if i == 0 and (1.0 - float(self.opts["tol"])) * max_flops <= flops[0] <= max_flops:
                return archs[0]
            ok = [(f, a) for f, a in zip(flops, archs) if f <= max_flops]
            if ok:
                return max(ok, key=lambda item: item[0])[1]
        return None

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bin_edges_flops": self.flops_model.edges.tolist(),
            "pool_sizes": [len(p) for p in self.pools],
            "probabilities": self.probabilities().tolist(),
            "shifts": self.history,
        }
        if self.generator is not None:
            table = []
            for k in range(len(self.phi)):
                centre = float(self.flops_model.edges[k:k + 2].mean())
                arch = self.propose(centre, samples=0)[0]
                table.append({"target_flops": centre, "arch": arch.to_string(),
                              "flops": float(self.flops_model.of_codes(np.array([arch.codes()]))[0])})
            out["generator_by_bin"] = table
        return out

    # --- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update({
            "phi": self.phi.tolist(), "ema": self.ema.cpu(), "ema_seen": self.ema_seen.tolist(),
            "previous": None if self.previous is None else self.previous.tolist(),
            "previous_seen": self.previous_seen.tolist(), "steps": self.steps, "tau": self.tau,
            "history": self.history, "torch_rng": self.torch_rng.get_state(),
        })
        if self.generator is not None:
            state["generator"] = self.generator.state_dict()
            state["generator_optimizer"] = self.gen_optimizer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.phi = np.array(state["phi"], dtype=float)
        self.ema = state["ema"].clone().to(self._stats_device or "cpu")
        self.ema_seen = np.array(state["ema_seen"], dtype=bool)
        self.previous = None if state["previous"] is None else np.array(state["previous"], dtype=float)
        self.previous_seen = np.array(state["previous_seen"], dtype=bool)
        self.steps, self.tau, self.history = int(state["steps"]), float(state["tau"]), list(state["history"])
        self.torch_rng.set_state(state["torch_rng"])
        if self.generator is not None:
            self.generator.load_state_dict(state["generator"])
            self.gen_optimizer.load_state_dict(state["generator_optimizer"])
