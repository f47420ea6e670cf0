"""Differentiable architecture search: DARTS (first and second order), GDAS and DrNAS (ALGORITHMS.md §7).

Architecture parameters `alpha[decision, candidate]` are trained with Adam on validation batches
(`arch_step`, called by the engine before every weight step); the weights train on training batches with the
relaxed arch that `sample()` returns. A mask (sub-space) restricts the relaxation: disallowed candidates get
weight exactly 0 and normalisation runs over allowed entries only. `derive()` is the arg-max candidate per
decision (NB201: `none` included, as the benchmark's DARTS code derives it); the layout of the relaxation and its
discretisation come from the space (`space.relaxation()`, `space.discretize()`: DARTS keeps the top-2 non-`none`
incoming edges per node).

- DARTS, `order: 1`: grad_alpha L_val(w, alpha).
- DARTS, `order: 2`: w' = w - xi * (momentum + grad_w L_train + wd * w) with xi the weights' current learning
  rate; grad = grad_alpha L_val(w', alpha) - xi * [grad_alpha L_train(w+) - grad_alpha L_train(w-)] / (2 eps),
  w+- = w +- eps * grad_w' L_val(w', alpha), eps = `unrolled_eps` / ||grad_w' L_val||.
- GDAS: straight-through Gumbel-softmax per decision, h = onehot(argmax y) - stopgrad(y) + y with
  y = softmax((log_softmax(alpha) + g) / tau), g ~ Gumbel(0, 1) redrawn if not finite; only the chosen
  candidate runs; tau falls linearly from `tau_max` to `tau_min` over the epochs.
- DrNAS: per decision a Dirichlet distribution with concentration elu(alpha) + 1; every step draws fresh weights
  with `rsample` (pathwise gradients reach alpha through the sample); first order; the regulariser is either L2
  on alpha (`reg_type: l2`, Adam's weight decay `reg_scale`, the shipped configs) or `reg_scale * KL(Dir(elu(alpha)
  + 1) || Dir(1))` added to the validation loss (`reg_type: kl`, weight decay 0). `derive()` is the discretisation
  of the expected weights (the concentration normalised).

All three run the supernet's build mode: `supernet.mode=mix` (weighted sum of candidate outputs) or `entangle`
(TangleNAS: one superposed op per entangled group; GDAS then runs the chosen candidate's group superposed).

The weight step gets the relaxed weights detached: its backward would only fill alpha gradients that the next
architecture step discards anyway.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from searchspaces import Arch
from searchspaces.options import choice, number
from supernets import ArchWeights

from .base import ArchStepContext, Strategy
from .registry import register_strategy

# The options of the Adam optimizer of the architecture parameters, common to DARTS, GDAS and DrNAS (DARTS's
# architect: Adam(3e-4, betas (0.5, 0.999)), specs/ALGORITHMS.md §7); each class adds its own to these.
ARCH_ADAM_OPTIONS = {
    "arch_lr": number(3e-4, "Adam learning rate of the architecture parameters alpha", 0.0, lo_open=True),
    "arch_beta1": number(0.5, "Adam beta1 of alpha", 0.0, 1.0, hi_open=True),
    "arch_beta2": number(0.999, "Adam beta2 of alpha", 0.0, 1.0, hi_open=True),
    "init_scale": number(1e-3, "alpha ~ init_scale * N(0, 1)", 0.0),
}
ARCH_WEIGHT_DECAY = number(1e-3, "Adam weight decay of alpha (an L2 regulariser)", 0.0)


class RelaxedStrategy(Strategy):
    """What the gradient methods share: `alpha[decision, candidate]` under the space's relaxation and mask, Adam on
    validation batches (`arch_step`, first order), the alpha history, `derive()` by the space's discretisation and
    resumable state. A subclass says how alpha becomes weights (`weights`, `relaxed`) and may add a regulariser
    (`arch_regulariser`) or its own architecture gradient (DARTS's second order). Not registered itself."""

    uses_arch_step = True
    derives_arch = True
    OPTIONS = {**ARCH_ADAM_OPTIONS, "arch_weight_decay": ARCH_WEIGHT_DECAY}

    def mode(self) -> str:
        return "mix"

    def setup(self, supernet, space, seed: int, data: Any = None, epochs: int | None = None,
              cost_task: dict[str, Any] | None = None) -> None:
        super().setup(supernet, space, seed, data, epochs, cost_task)
        self.total_epochs = int(epochs or 1)
        self.epoch = 0
        device = next(supernet.parameters()).device
        self.rows = space.relaxation()  # NB201: the 6 edges; DARTS: 14 normal + 14 reduce edges over 8 ops
        mask = space.relaxation_mask()
        self.mask = torch.from_numpy(mask).to(device)
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 0xA1FA]).generate_state(1)[0]))
        init = float(self.opts["init_scale"]) * torch.randn(mask.shape, generator=generator)
        self.alpha = torch.nn.Parameter(init.to(device))
        self.optimizer = torch.optim.Adam([self.alpha], lr=float(self.opts["arch_lr"]),
                                          betas=(float(self.opts["arch_beta1"]), float(self.opts["arch_beta2"])),
                                          weight_decay=self._arch_weight_decay())
        self.history: list[list[list[float]]] = []

    def _arch_weight_decay(self) -> float:
        """Adam's weight decay on alpha (an L2 regulariser)."""
        return float(self.opts["arch_weight_decay"])

    # --- relaxation ------------------------------------------------------------------------------
    def _masked_logits(self) -> torch.Tensor:
        return self.alpha.masked_fill(~self.mask, float("-inf"))

    def weights(self) -> torch.Tensor:
        """Softmax over the allowed candidates of each decision (disallowed: exactly 0)."""
        return torch.softmax(self._masked_logits(), dim=1)

    def relaxed(self) -> ArchWeights:
        return ArchWeights(self.weights())

    def sample(self) -> ArchWeights:
        relaxed = self.relaxed()
        return ArchWeights(relaxed.weights.detach(), relaxed.hard)

    def probe(self, rng: np.random.Generator) -> ArchWeights:
        """GM-NAS in DARTS/SNAS mode: the masked relaxed weights (no sample, no gradient)."""
        return ArchWeights(self.weights().detach())

    # --- architecture step -----------------------------------------------------------------------
    def _loss(self, batch, relaxed: ArchWeights) -> torch.Tensor:
        return F.cross_entropy(self.supernet(batch.x, relaxed), batch.y)

    def arch_regulariser(self) -> torch.Tensor | None:
        """A term added to the validation loss of the architecture step (DrNAS's KL), or None."""
        return None

    def arch_step(self, batch, ctx: ArchStepContext) -> None:
        """First order: alpha moves along the gradient of the validation loss (plus the regulariser, if any)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(batch, self.relaxed())
        regulariser = self.arch_regulariser()
        if regulariser is not None:
            loss = loss + regulariser
        self.alpha.grad = torch.autograd.grad(loss, self.alpha)[0]
        self.optimizer.step()

    # --- results ---------------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        self.epoch = epoch + 1
        weights = self.weights().detach()
        self.history.append(weights.cpu().tolist())
        entropy = -(weights.clamp(min=1e-12).log() * weights).sum(dim=1).mean()
        return {"alpha_entropy": float(entropy)}

    def derive(self, max_flops: float | None = None) -> Arch:
        """The space's discretisation of the relaxed weights (NB201: arg-max per edge; DARTS: top-2 per node)."""
        return self.space.discretize(self.weights().detach().cpu().numpy())

    def report(self) -> dict[str, Any]:
        return {
            "strategy": self.name,
            "labels": [label for label, _ in self.rows],
            "candidates": [list(map(str, candidates)) for _, candidates in self.rows],
            "alpha": self.alpha.detach().cpu().tolist(),
            "alpha_history": self.history,
            "derived": self.derive().to_string(),
        }

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update({"alpha": self.alpha.detach().cpu(), "optimizer": self.optimizer.state_dict(),
                      "history": self.history, "epoch": self.epoch})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        with torch.no_grad():
            self.alpha.copy_(state["alpha"].to(self.alpha.device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = [list(map(list, epoch)) for epoch in state["history"]]
        self.epoch = int(state["epoch"])


@register_strategy("DARTS: softmax relaxation, architecture by gradient on a held-out split (order 1 or 2)")
class DARTSStrategy(RelaxedStrategy):
    """DARTS (Liu et al., ICLR 2019): softmax-relaxed candidates, alpha by gradient on a held-out split."""

    name = "darts"
    OPTIONS = {
        "order": choice(1, "1: first order | 2: unrolled second order (finite-difference Hessian-vector product)",
                        (1, 2)),
        **ARCH_ADAM_OPTIONS,
        "arch_weight_decay": ARCH_WEIGHT_DECAY,
        "unrolled_eps": number(0.01, "order 2: eps = unrolled_eps / ||grad_w' L_val||", 0.0, lo_open=True),
    }

    def arch_step(self, batch, ctx: ArchStepContext) -> None:
        """Order 1: the base class's step; order 2: the unrolled gradient (the module docstring)."""
        if self.opts["order"] == 1:
            return super().arch_step(batch, ctx)
        self.optimizer.zero_grad(set_to_none=True)
        self.alpha.grad = self._unrolled_gradient(batch, ctx)
        self.optimizer.step()

    def _unrolled_gradient(self, valid_batch, ctx: ArchStepContext) -> torch.Tensor:
        params = [p for p in self.supernet.parameters() if p.requires_grad]
        group = ctx.optimizer.param_groups[0]
        xi, momentum, decay = ctx.lr, group.get("momentum", 0.0), group.get("weight_decay", 0.0)
        train_loss = self._loss(ctx.train_batch, ArchWeights(self.weights().detach()))
        grads = torch.autograd.grad(train_loss, params, allow_unused=True)
        backup = [p.detach().clone() for p in params]
        with torch.no_grad():  # one virtual SGD step, as the weight optimizer would take it
            for p, g in zip(params, grads):
                buffer = ctx.optimizer.state.get(p, {}).get("momentum_buffer")
                step = (g if g is not None else torch.zeros_like(p)) + decay * p
                if buffer is not None:
                    step = step + momentum * buffer
                p.sub_(xi * step)
        valid_loss = self._loss(valid_batch, self.relaxed())
        d_alpha, *d_params = torch.autograd.grad(valid_loss, [self.alpha, *params], allow_unused=True)
        d_params = [torch.zeros_like(p) if d is None else d for p, d in zip(params, d_params)]
        norm = torch.sqrt(sum((d * d).sum() for d in d_params))
        eps = float(self.opts["unrolled_eps"]) / norm.clamp(min=1e-12)
        implicit = []
        for sign in (1.0, -1.0):  # finite-difference Hessian-vector product around the ORIGINAL weights
            with torch.no_grad():
                for p, saved, d in zip(params, backup, d_params):
                    p.copy_(saved + sign * eps * d)
            implicit.append(torch.autograd.grad(self._loss(ctx.train_batch, self.relaxed()), self.alpha)[0])
        with torch.no_grad():
            for p, saved in zip(params, backup):
                p.copy_(saved)
        return d_alpha - xi * (implicit[0] - implicit[1]) / (2 * eps)


@register_strategy("GDAS: straight-through Gumbel samples of one candidate per decision, annealed temperature")
class GDASStrategy(RelaxedStrategy):
    """GDAS (Dong & Yang, CVPR 2019): one straight-through Gumbel sample per decision; only it runs."""

    name = "gdas"
    OPTIONS = {
        **ARCH_ADAM_OPTIONS,
        "arch_weight_decay": ARCH_WEIGHT_DECAY,
        "tau_max": number(10.0, "Gumbel-softmax temperature of the first epoch; it falls linearly to tau_min", 0.0,
                          lo_open=True),
        "tau_min": number(0.1, "Gumbel-softmax temperature of the last epoch", 0.0, lo_open=True),
    }

    def mode(self) -> str:
        return "hard"

    def setup(self, supernet, space, seed: int, data: Any = None, epochs: int | None = None,
              cost_task: dict[str, Any] | None = None) -> None:
        super().setup(supernet, space, seed, data, epochs, cost_task)
        self.generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, 0x6DA5]).generate_state(1)[0]))

    def tau(self) -> float:
        """Linear from tau_max (first epoch) to tau_min (last epoch)."""
        span = max(self.total_epochs - 1, 1)
        hi, lo = float(self.opts["tau_max"]), float(self.opts["tau_min"])
        return hi - (hi - lo) * min(self.epoch, span) / span

    def relaxed(self) -> ArchWeights:
        log_probs = torch.log_softmax(self._masked_logits(), dim=1)
        for _ in range(100):
            uniform = torch.rand(self.alpha.shape, generator=self.generator).to(self.alpha.device, non_blocking=True)
            gumbel = -torch.log(-torch.log(uniform))
            y = torch.softmax((log_probs + gumbel) / self.tau(), dim=1)
            if torch.isfinite(gumbel).all() and torch.isfinite(y).all():  # a host sync; GDAS needs the index anyway
                break
        index = y.argmax(dim=1)
        hard = F.one_hot(index, y.shape[1]).to(y.dtype) - y.detach() + y
        return ArchWeights(hard, hard=tuple(index.tolist()))

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        tau = self.tau()  # the temperature this epoch trained with
        return {**super().on_epoch_end(epoch), "gdas_tau": tau}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "gumbel_generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.generator.set_state(state["gumbel_generator"])


@register_strategy("DrNAS: weights sampled from a Dirichlet per decision (pathwise gradients), L2 or KL regulariser")
class DrNASStrategy(RelaxedStrategy):
    """DrNAS (Chen et al., ICLR 2021): architecture weights drawn from a Dirichlet distribution per decision.

    The concentration of decision d is `elu(alpha[d]) + 1` (positive for any alpha); `relaxed()` draws
    `Dirichlet(concentration).rsample()` on every call, i.e. once for the weight step (`sample()`, detached) and once
    for the architecture step, so that the gradient of the validation loss reaches alpha through the sample
    (pathwise, reparameterised gradients). A mask restricts each Dirichlet to the allowed candidates (a Dirichlet
    sample renormalised over a subset is the Dirichlet of that subset); disallowed entries are exactly 0.

    Regulariser (`reg_type`): `l2` (the shipped TangleNAS/DrNAS configs) is Adam's weight decay `reg_scale` on
    alpha; `kl` adds `reg_scale * sum_d KL(Dir(elu(alpha_d) + 1) || Dir(1))` to the validation loss and sets the
    weight decay to 0 (a given `reg_scale` replaces Adam's weight decay, specs/ALGORITHMS.md §3.4). First order only.
    `derive()` discretises the expected weights, the concentration normalised (`weights()`).

    The draws come from torch's global generator on alpha's device, which the engine reseeds at every epoch
    (`nas.runtime.seed_epoch_globals`): a run resumed from its last checkpoint draws what the uninterrupted run drew.

    Out of scope: DrNAS's progressive search with partial channel connections (`k = 6` on the DARTS space, TangleNAS
    `darts-drnas.config`); this strategy runs every channel of every candidate, on any space with a relaxation.
    """

    name = "drnas"
    OPTIONS = {
        **ARCH_ADAM_OPTIONS,
        "reg_type": choice("l2", "l2: Adam weight decay reg_scale on alpha | kl: + reg_scale * KL(Dir(elu(alpha)+1) "
                                 "|| Dir(1)), no decay", ("l2", "kl")),
        "reg_scale": number(1e-3, "the regulariser's scale (reg_type)", 0.0),
    }

    def _arch_weight_decay(self) -> float:
        return float(self.opts["reg_scale"]) if self.opts["reg_type"] == "l2" else 0.0

    def setup(self, supernet, space, seed: int, data: Any = None, epochs: int | None = None,
              cost_task: dict[str, Any] | None = None) -> None:
        super().setup(supernet, space, seed, data, epochs, cost_task)
        self.masked = not bool(self.mask.all())

    def concentration(self) -> torch.Tensor:
        """`elu(alpha) + 1` per decision and candidate; disallowed entries are 1 (they take no part)."""
        return (F.elu(self.alpha) + 1.0).masked_fill(~self.mask, 1.0)

    def weights(self) -> torch.Tensor:
        """The expected weights `E[w] = concentration / sum(concentration)` over the allowed candidates."""
        concentration = self.concentration().masked_fill(~self.mask, 0.0)
        return concentration / concentration.sum(dim=1, keepdim=True)

    def relaxed(self) -> ArchWeights:
        """A fresh Dirichlet sample per decision, differentiable in alpha."""
        sample = torch.distributions.Dirichlet(self.concentration()).rsample()
        if self.masked:
            sample = sample.masked_fill(~self.mask, 0.0)
            sample = sample / sample.sum(dim=1, keepdim=True)
        return ArchWeights(sample)

    def kl(self) -> torch.Tensor:
        """`KL(Dir(elu(alpha_d) + 1) || Dir(1))` per decision d, over its allowed candidates."""
        return dirichlet_kl_to_uniform(self.concentration(), self.mask)

    def arch_regulariser(self) -> torch.Tensor | None:
        """`reg_scale * sum_d KL(...)` with `reg_type: kl`; None with `l2` (Adam's weight decay instead)."""
        if self.opts["reg_type"] != "kl":
            return None
        return float(self.opts["reg_scale"]) * self.kl().sum()


def dirichlet_kl_to_uniform(concentration: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`KL(Dir(a) || Dir(1, ..., 1))` for every row of `concentration`, over the entries `mask` allows:
    `lgamma(sum a) - sum lgamma(a) - lgamma(n) + sum (a - 1) (digamma(a) - digamma(sum a))`, n the allowed count.
    Zero exactly where a = 1 (the uniform Dirichlet itself), positive elsewhere."""
    keep = mask.to(concentration.dtype)
    a = torch.where(mask, concentration, torch.ones_like(concentration))
    total = (a * keep).sum(dim=1)
    count = keep.sum(dim=1)
    return (torch.lgamma(total) - (torch.lgamma(a) * keep).sum(dim=1) - torch.lgamma(count)
            + ((a - 1.0) * (torch.digamma(a) - torch.digamma(total)[:, None]) * keep).sum(dim=1))
