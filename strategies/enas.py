"""ENAS (Pham et al. 2018): an LSTM controller trained with REINFORCE picks the path of every supernet step; with
`memory: true`, the memory-buffer regulariser of Adam & Lorraine (specs/ALGORITHMS.md §5).

Alternation, as the reference does it, per epoch: the shared-weight phase is the engine's epoch (one controller
sample per minibatch, no gradient to the controller), then the controller phase runs in `on_epoch_end`:
`controller_steps` Adam steps, each aggregating `num_aggregate` sampled archs. Each sample's reward is the
supernet's accuracy (0..1) on its own validation minibatch, BN on batch statistics and no running statistic
touched, plus `entropy_weight` x the sample's entropy (stop-gradient) when `entropy_mode: reward`. The baseline
moves before each sample's loss, `b <- decay * b + (1 - decay) * R` (TF ENAS), and the loss is the mean of
`-log pi(arch) * (R - b)` over the aggregated samples (`- entropy_weight * H` in `entropy_mode: regularizer`).

Memory buffer (`memory: true`): at the start of every controller phase from epoch `buffer_store_epoch` (0-based:
the phase that ends epoch `buffer_store_epoch + 1`), `buffer_per_epoch` archs drawn without gradient are stored;
from `buffer_loss_epoch`, every controller step adds `buffer_weight` x the reconstruction loss of
`buffer_batch` random stored archs (teacher-forced next-decision cross-entropy from the zero state). Fixed by
default, the reference's behaviour behind flags: `buffer_replace: tail`, `compat_double_softmax`,
`compat_raw_tokens` (`strategies.memory`, `strategies.controller.LSTMController.reconstruction_loss`).

Profiles (`profile`) set the defaults of the reference scripts (§5.1 table); an option set explicitly wins.
Adam is TF ENAS's (`beta1 = 0`, `eps = 1e-3`). Under `cifar_micro` op logits are bounded to
`tanh_constant / op_tanh_reduce` (1.10 / 2.5 = 0.44) and input-index logits (DARTS) to `tanh_constant`.

The final arch (`derive`): `sample` (default) draws `derive_samples` archs from the trained controller and keeps
the one with the best accuracy on the whole validation split with the shared weights (the ENAS recipe); `argmax`
decodes greedily; `search` leaves the pick to the run's post-training search with inherited weights.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

import supernets
from searchspaces import Arch
from searchspaces.options import choice, flag, integer, number

from .base import Strategy
from .controller import ControllerSample, LSTMController
from .memory import REPLACE_MODES, MemoryBuffer
from .registry import register_strategy

PROFILES: dict[str, dict[str, Any]] = {
    # TF ENAS scripts/cifar10_micro_search.sh
    "cifar_micro": {"lstm_size": 64, "tanh_constant": 1.10, "op_tanh_reduce": 2.5, "temperature": 1.0,
                    "entropy_weight": 1e-4, "baseline_decay": 0.99, "lr": 3.5e-3, "controller_steps": 30,
                    "num_aggregate": 10},
    # TF ENAS scripts/cifar10_macro_search.sh (its skip-connection KL term has no generic counterpart)
    "cifar_macro": {"lstm_size": 64, "tanh_constant": 1.5, "op_tanh_reduce": 2.5, "temperature": 1.0,
                    "entropy_weight": 1e-4, "baseline_decay": 0.99, "lr": 1e-3, "controller_steps": 50,
                    "num_aggregate": 20},
    # TF ENAS scripts/ptb_search.sh
    "ptb": {"lstm_size": 100, "tanh_constant": 2.5, "op_tanh_reduce": 1.0, "temperature": 5.0,
            "entropy_weight": 1e-3, "baseline_decay": 0.99, "lr": 1e-3, "controller_steps": 100,
            "num_aggregate": 10},
}
FROM_PROFILE = tuple(PROFILES["cifar_micro"])
SAMPLE_CHUNK = 32  # archs drawn at once for the shared-weight phase (one LSTM call per decision for all)


@register_strategy("ENAS: an LSTM controller trained by REINFORCE picks each step's path; optional memory buffer")
class ENASStrategy(Strategy):
    """ENAS over any space: the controller emits `space.decisions` in order (see `strategies.controller`)."""

    name = "enas"
    needs_valid_split = True
    derives_arch = True
    OPTIONS = {
        "profile": choice("cifar_micro", "the reference script whose controller settings are the defaults",
                          tuple(PROFILES)),
        "lstm_size": integer(None, "LSTM width (null: the profile's)", 1, nullable=True),
        "tanh_constant": number(None, "logits c * tanh(logits / T); 0: unbounded (null: the profile's)", 0.0,
                                nullable=True),
        "op_tanh_reduce": number(None, "op (non-input) logits are bounded by tanh_constant / op_tanh_reduce (null: "
                                       "the profile's)", 0.0, lo_open=True, nullable=True),
        "temperature": number(None, "softmax temperature T of the logits (null: the profile's)", 0.0, lo_open=True,
                              nullable=True),
        "entropy_weight": number(None, "weight of the sample entropy (null: the profile's)", 0.0, nullable=True),
        "entropy_mode": choice("reward", "entropy added to the reward (stop-gradient, TF ENAS) or subtracted from "
                                         "the loss as a regulariser", ("reward", "regularizer")),
        "baseline_decay": number(None, "moving-average baseline b <- decay * b + (1 - decay) * R (null: the "
                                       "profile's)", 0.0, 1.0, hi_open=True, nullable=True),
        "lr": number(None, "Adam learning rate of the controller (null: the profile's)", 0.0, lo_open=True,
                     nullable=True),
        "controller_steps": integer(None, "controller Adam steps per epoch; 0 leaves it untrained, a random "
                                          "controller (null: the profile's)", 0, nullable=True),
        "num_aggregate": integer(None, "sampled archs whose losses each controller step averages (null: the "
                                       "profile's)", 1, nullable=True),
        "reward_batch_size": integer(128, "validation images per reward (one minibatch per sampled arch)", 1),
        "reject_invalid": flag(False, "redraw archs the space calls invalid (NB201: output unreachable); ENAS "
                                      "trains them"),
        "derive": choice("sample", "final arch: best of derive_samples controller samples on the validation "
                                   "split, the greedy decoding, or the run's post-training search",
                         ("sample", "argmax", "search")),
        "derive_samples": integer(100, "controller samples scored by derive: sample", 1),
        "memory": flag(False, "the memory-buffer reconstruction loss of Adam & Lorraine"),
        "buffer_size": integer(10_000, "memory buffer capacity (archs)", 1),
        "buffer_store_epoch": integer(5, "first epoch (0-based) whose controller phase stores archs", 0),
        "buffer_per_epoch": integer(1000, "archs drawn and stored at the start of each controller phase", 1),
        "buffer_replace": choice("random", "when full: overwrite random rows, or the last rows as the reference "
                                           "code does (its earlier rows never change)", REPLACE_MODES),
        "buffer_replace_rows": integer(100, "rows overwritten per controller phase once the buffer is full", 1),
        "buffer_loss_epoch": integer(10, "first epoch (0-based) whose controller steps add the reconstruction loss",
                                     0),
        "buffer_batch": integer(100, "stored archs per reconstruction loss", 1),
        "buffer_weight": number(1.0, "weight of the reconstruction loss", 0.0),
        "compat_double_softmax": flag(False, "reference bug: cross-entropy applied to softmax(logits)"),
        "compat_raw_tokens": flag(False, "reference bug: reconstruction feeds raw candidate ids without the "
                                         "per-decision offset and skips the start step"),
    }

    # --- set-up ----------------------------------------------------------------------------------
    def setup(self, supernet, space, seed: int, data: Any = None, epochs: int | None = None,
              cost_task: dict[str, Any] | None = None) -> None:
        super().setup(supernet, space, seed, data, epochs, cost_task)
        valid = getattr(data, "valid", None)
        if valid is None or len(valid) == 0:
            raise ValueError("strategy enas rewards its controller on a validation split; set data.valid_fraction > 0")
        self.valid, self.seed = valid, seed
        self.device = next(supernet.parameters()).device
        self.settings = self.resolved(self.opts)
        self.controller = build_controller(space, self.settings, seed)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=self.settings["lr"], betas=(0.0, 0.999),
                                          eps=1e-3)
        self.baseline = 0.0
        self.buffer = MemoryBuffer(self.opts["buffer_size"], len(space.decisions), self.opts["buffer_replace"],
                                   self.opts["buffer_replace_rows"])
        self.queue: list[list[int]] = []
        self.history: list[dict[str, float]] = []

    @staticmethod
    def resolved(opts: dict[str, Any]) -> dict[str, Any]:
        """The options with every null replaced by the profile's value."""
        profile = PROFILES[opts["profile"]]
        return {**opts, **{k: profile[k] if opts.get(k) is None else opts[k] for k in FROM_PROFILE}}

    # --- drawing archs -----------------------------------------------------------------------------
    def draw(self, n: int, greedy: bool = False, grad: bool = False) -> ControllerSample:
        """`n` sequences from the controller (the space's constraints applied; invalid ones redrawn if
        `reject_invalid`); with `grad`, log-probabilities and entropies keep their graph."""
        with torch.set_grad_enabled(grad):
            drawn = self.controller.sample(n, self.rng, self.space.allowed_next, greedy=greedy)
            if not self.opts["reject_invalid"] or greedy:
                return drawn
            for _ in range(100):
                bad = np.flatnonzero([not self.space.is_valid(self.space.decode(row)) for row in drawn.tokens])
                if not len(bad):
                    return drawn
                again = self.controller.sample(len(bad), self.rng, self.space.allowed_next)
                drawn = _replace_rows(drawn, bad, again)
        raise ValueError(f"the ENAS controller drew no valid arch of space {self.space.name!r} in 100 rounds")

    def arch_of(self, tokens) -> Arch:
        return self.space.decode([int(t) for t in tokens])

    def sample(self) -> Arch:
        if not self.queue:
            self.queue = self.draw(SAMPLE_CHUNK).tokens.tolist()[::-1]
        return self.arch_of(self.queue.pop())

    # --- controller phase --------------------------------------------------------------------------
    def _valid_batches(self, epoch: int):
        size = min(int(self.opts["reward_batch_size"]), len(self.valid))
        for cycle in range(10**9):
            generator = torch.Generator().manual_seed(
                int(np.random.SeedSequence([self.seed, 0xE4A5, epoch, cycle]).generate_state(1)[0]))
            yield from self.valid.batches(size, shuffle=True, generator=generator, drop_last=True, augment=False)

    @torch.no_grad()
    def rewards(self, archs: list[Arch], batches) -> torch.Tensor:
        """Accuracy (0..1) of each arch on its own next validation minibatch, shared weights, batch-statistics BN
        (no running statistic changes); one host sync for all of them."""
        net = self.supernet
        was_training = net.training
        net.eval()
        accs = []
        with supernets.batch_statistics(net):
            for arch in archs:
                batch = next(batches)
                accs.append((net(batch.x, arch).argmax(1) == batch.y).float().mean())
        net.train(was_training)
        return torch.stack(accs).cpu()

    def controller_step(self, batches, epoch: int) -> dict[str, float]:
        """One REINFORCE step over `num_aggregate` samples (plus the reconstruction loss when it is due)."""
        s = self.settings
        drawn = self.draw(int(s["num_aggregate"]), grad=True)
        acc = self.rewards([self.arch_of(t) for t in drawn.tokens], batches).double()
        entropy = drawn.entropy.detach().double()
        reward = acc + s["entropy_weight"] * entropy if s["entropy_mode"] == "reward" else acc
        decay, b = float(s["baseline_decay"]), self.baseline
        baselines = []
        for r in reward.tolist():  # the baseline moves before each sample's loss (TF ENAS)
            b = decay * b + (1.0 - decay) * r
            baselines.append(b)
        self.baseline = b
        advantage = (reward - torch.tensor(baselines, dtype=torch.float64)).float()
        loss = -(drawn.log_prob * advantage).mean()
        if s["entropy_mode"] == "regularizer":
            loss = loss - s["entropy_weight"] * drawn.entropy.mean()
        recon = self._reconstruction(epoch)
        if recon is not None:
            loss = loss + float(self.opts["buffer_weight"]) * recon
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"reward": float(reward.mean()), "accuracy": float(acc.mean()), "entropy": float(entropy.mean()),
                "loss": float(loss.detach()), "reconstruction": float(recon.detach()) if recon is not None else None}

    def _reconstruction(self, epoch: int) -> torch.Tensor | None:
        if not self.opts["memory"] or epoch < self.opts["buffer_loss_epoch"] or not len(self.buffer):
            return None
        rows = self.buffer.draw(int(self.opts["buffer_batch"]), self.rng)
        tokens = rows.numpy()
        masks = [torch.from_numpy(np.ascontiguousarray(self.space.allowed_next(t, tokens[:, :t])))
                 for t in range(tokens.shape[1])]
        return self.controller.reconstruction_loss(rows, masks, double_softmax=self.opts["compat_double_softmax"],
                                                   raw_tokens=self.opts["compat_raw_tokens"])

    def on_epoch_end(self, epoch: int) -> dict[str, float]:
        """The controller phase: store archs in the buffer (when due), then the controller steps."""
        started = time.perf_counter()
        self.queue = []  # archs drawn before this phase came from the old controller
        stored = 0
        if self.opts["memory"] and epoch >= self.opts["buffer_store_epoch"]:
            stored = self.buffer.add(self.draw(int(self.opts["buffer_per_epoch"])).tokens, self.rng)
        batches = self._valid_batches(epoch)
        steps = [self.controller_step(batches, epoch) for _ in range(int(self.settings["controller_steps"]))]
        row: dict[str, float] = {"controller_seconds": round(time.perf_counter() - started, 3),
                                 "controller_baseline": self.baseline}
        for key in ("reward", "accuracy", "entropy", "loss", "reconstruction"):
            values = [s[key] for s in steps if s[key] is not None]
            if values:
                row[f"controller_{key}"] = float(np.mean(values))
        if self.opts["memory"]:
            row["buffer_rows"], row["buffer_stored"] = len(self.buffer), stored
        self.history.append({"epoch": epoch + 1, **row})
        return row

    # --- the final arch ------------------------------------------------------------------------------
    @torch.no_grad()
    def derive(self, max_flops: float | None = None) -> Arch | None:
        if self.opts["derive"] == "search":
            return None
        if self.opts["derive"] == "argmax":
            return self.arch_of(self.draw(1, greedy=True).tokens[0])
        candidates = list(dict.fromkeys(self.arch_of(t) for t in self.draw(int(self.opts["derive_samples"])).tokens))
        if max_flops is not None and self.space.has_flops:
            candidates = [a for a in candidates if self.space.flops(a, **self.cost_task) <= max_flops]
            if not candidates:
                return None  # none within the budget: the run's search picks instead
        self.derive_scored = len(candidates)
        return max(candidates, key=self.validation_accuracy)

    @torch.no_grad()
    def validation_accuracy(self, arch: Arch) -> float:
        """Accuracy (%) of `arch` with the shared weights on the whole validation split (batch-statistics BN)."""
        net = self.supernet
        was_training = net.training
        net.eval()
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        with supernets.batch_statistics(net):
            for batch in self.valid.batches(int(self.opts["reward_batch_size"]), augment=False):
                correct += (net(batch.x, arch).argmax(1) == batch.y).sum()
        net.train(was_training)
        return 100.0 * correct.item() / len(self.valid)

    def report(self) -> dict[str, Any]:
        greedy = self.arch_of(self.draw(1, greedy=True).tokens[0]) if self.space is not None else None
        return {"settings": {k: self.settings[k] for k in FROM_PROFILE}, "greedy_arch": greedy and greedy.to_string(),
                "baseline": self.baseline, "buffer_rows": len(self.buffer), "history": self.history}

    # --- checkpointing ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "controller": self.controller.state_dict(),
                "optimizer": self.optimizer.state_dict(), "baseline": self.baseline, "buffer": self.buffer.state_dict(),
                "queue": [list(map(int, row)) for row in self.queue], "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = float(state["baseline"])
        self.buffer.load_state_dict(state["buffer"])
        self.queue = [list(row) for row in state["queue"]]
        self.history = list(state["history"])


def build_controller(space, settings: dict[str, Any], seed: int) -> LSTMController:
    """A controller for `space` with resolved settings, initialised from `seed` alone (the global generators are
    left as they were): the untrained "random controller" of the hidden-state analysis is this with no step."""
    inputs = set(space.input_labels())
    c = float(settings["tanh_constant"])
    bounds = [c if d.label in inputs else c / float(settings["op_tanh_reduce"]) for d in space.decisions]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(np.random.SeedSequence([seed, 0xC0DE]).generate_state(1)[0]))
        return LSTMController([len(d.candidates) for d in space.decisions], bounds, int(settings["lstm_size"]),
                              float(settings["temperature"]))


def _replace_rows(drawn: ControllerSample, rows: np.ndarray, again: ControllerSample) -> ControllerSample:
    """`drawn` with its `rows` replaced by the sequences of `again` (in order)."""
    index = torch.from_numpy(rows)
    tokens = drawn.tokens.copy()
    tokens[rows] = again.tokens
    return ControllerSample(tokens, drawn.log_prob.index_put((index,), again.log_prob),
                            drawn.entropy.index_put((index,), again.entropy),
                            drawn.hidden.index_put((index,), again.hidden),
                            drawn.emit_hidden.index_put((index,), again.emit_hidden))
