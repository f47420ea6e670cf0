"""The ENAS controller: an LSTM that emits a space's decisions one after another (specs/ALGORITHMS.md §5.1).

Any registered space works without per-space code: decision t of `space.decisions` is step t of the sequence, its
candidates the step's choices. As in the PyTorch ENAS port, every decision has its own decoder (a linear head) and
its own block of rows in one embedding table (`offsets[t] + choice`); the input of step 0 is a learned start
vector, the input of step t > 0 the embedding of decision t-1's token. Logits are `c * tanh(logits / T)`, with `c`
the tanh constant of the decision (ENAS bounds op logits tighter than input-index logits), and the candidates the
space does not allow after the earlier choices (`Space.allowed_next`: DARTS's distinct ascending inputs and edge
masks, MobileNet's inactive blocks, any mask) get probability exactly 0. Tokens are therefore the canonical codes
of the arch (`space.decode(tokens)`), and the memory buffer can store them as they were drawn.

The controller lives on the host: a 64-unit LSTM over a few dozen steps is launch-bound on a GPU, and drawing
on the host keeps the supernet's device free of syncs (a path is needed on the host anyway). Draws use the
caller's numpy generator (inverse CDF), so a strategy's checkpointed generator covers them. Sequences are sampled
in batches: one LSTM call per decision for all of them.

Hidden states for the analysis (§5.4): `hidden`, the state after the LSTM has read the last decision's token too
(one more step), which depends on the whole arch; and `emit_hidden`, the state that emitted the last decision,
which has read every token but that one (the last state of the sampling loop in the reference code).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

AllowedNext = Callable[[int, np.ndarray], np.ndarray]  # (position, prefix [B, position]) -> bool [B, candidates]


@dataclass
class ControllerSample:
    """A batch of sequences drawn by the controller."""

    tokens: np.ndarray  # [B, T] int64: the candidate index of every decision
    log_prob: torch.Tensor  # [B], sum over decisions of log pi(a_t) (with gradient unless drawn under no_grad)
    entropy: torch.Tensor  # [B], sum over decisions of the entropy of pi_t (with gradient likewise)
    hidden: torch.Tensor  # [B, H], the state after reading every token
    emit_hidden: torch.Tensor  # [B, H], the state that emitted the last decision (it has not read that token)


class LSTMController(nn.Module):
    """`sizes[t]` candidates at step t; `bounds[t]` the tanh constant of step t (0: no bound)."""

    def __init__(self, sizes: Sequence[int], bounds: Sequence[float], hidden: int = 64, temperature: float = 1.0,
                 init_range: float = 0.1):
        super().__init__()
        if len(sizes) != len(bounds) or not sizes:
            raise ValueError("a controller needs one bound per decision and at least one decision")
        self.sizes = tuple(int(n) for n in sizes)
        self.register_buffer("bounds", torch.tensor([float(b) for b in bounds]), persistent=False)
        self.temperature = float(temperature)
        self.hidden_size = int(hidden)
        self.offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(self.sizes)[:-1]]))
        self.start = nn.Parameter(torch.zeros(hidden))
        self.embedding = nn.Embedding(sum(self.sizes), hidden)
        self.cell = nn.LSTMCell(hidden, hidden)
        self.decoders = nn.ModuleList(nn.Linear(hidden, n) for n in self.sizes)
        for p in self.parameters():  # the PyTorch ENAS port: uniform(-0.1, 0.1), decoder biases 0
            nn.init.uniform_(p, -init_range, init_range)
        for decoder in self.decoders:
            nn.init.zeros_(decoder.bias)

    def __len__(self) -> int:
        return len(self.sizes)

    # --- one step --------------------------------------------------------------------------------
    def logits(self, position: int, h: torch.Tensor) -> torch.Tensor:
        """The bounded logits of decision `position` from the LSTM output `h` ([B, H] -> [B, candidates])."""
        logits = self.decoders[position](h) / self.temperature
        bound = self.bounds[position]
        return bound * torch.tanh(logits) if bound > 0 else logits

    def token_input(self, position: int, tokens: torch.Tensor) -> torch.Tensor:
        """The LSTM input after decision `position` took `tokens` ([B] candidate indices)."""
        return self.embedding(tokens + self.offsets[position])

    def _initial(self, batch: int) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        zeros = torch.zeros(batch, self.hidden_size)
        return self.start.expand(batch, -1), (zeros, zeros)

    # --- sampling --------------------------------------------------------------------------------
    def sample(self, batch: int, rng: np.random.Generator, allowed_next: AllowedNext,
               greedy: bool = False) -> ControllerSample:
        """Draw `batch` sequences (greedy: the most probable allowed candidate at every step)."""
        x, state = self._initial(batch)
        tokens = np.zeros((batch, len(self)), dtype=np.int64)
        log_prob = torch.zeros(batch)
        entropy = torch.zeros(batch)
        for t in range(len(self)):
            state = self.cell(x, state)
            allowed = torch.from_numpy(np.ascontiguousarray(allowed_next(t, tokens[:, :t])))
            logp = torch.log_softmax(self.logits(t, state[0]).masked_fill(~allowed, float("-inf")), dim=1)
            probs = logp.exp()
            if greedy:
                choice = probs.detach().argmax(1).numpy()
            else:  # inverse CDF on the host generator; clipped so that rounding never picks a disallowed column
                cdf = probs.detach().double().cumsum(1).numpy()
                u = rng.random((batch, 1)) * cdf[:, -1:]
                choice = np.minimum((cdf <= u).sum(1), len(cdf[0]) - 1)
                choice = np.where(allowed.numpy()[np.arange(batch), choice], choice, probs.detach().argmax(1).numpy())
            tokens[:, t] = choice
            picked = torch.from_numpy(choice)
            log_prob = log_prob + logp.gather(1, picked[:, None]).squeeze(1)
            entropy = entropy - torch.where(allowed, probs * logp, torch.zeros(())).sum(1)
            x = self.token_input(t, picked)
        emitted = state[0]
        state = self.cell(x, state)
        return ControllerSample(tokens, log_prob, entropy, state[0], emitted)

    # --- teacher forcing ---------------------------------------------------------------------------
    def hidden_states(self, tokens: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The final hidden state ([B, H]) of given sequences, read with teacher forcing."""
        tokens = torch.as_tensor(np.asarray(tokens), dtype=torch.long)
        x, state = self._initial(len(tokens))
        for t in range(len(self)):
            state = self.cell(x, state)
            x = self.token_input(t, tokens[:, t])
        return self.cell(x, state)[0]

    def reconstruction_loss(self, tokens: torch.Tensor, masks: Sequence[torch.Tensor] | None = None,
                            double_softmax: bool = False, raw_tokens: bool = False) -> torch.Tensor:
        """The memory buffer's loss (§5.3): predict every decision of stored sequences from the ones before it,
        teacher forced from the zero state, mean cross-entropy over decisions and sequences.

        Fixed form (default): the inputs are those of sampling (start vector, then each token at its decision's
        offset), every decision is predicted, and the cross-entropy is taken on the (bounded, masked by `masks[t]`,
        the allowed candidates of step t per row) logits. Compatibility with the reference code:
        `double_softmax` applies the cross-entropy to softmax(logits); `raw_tokens` feeds the raw candidate index
        (no per-decision offset) and skips the start step, so decision t+1 is predicted from token t alone and
        decision 0 is never predicted."""
        tokens = tokens.long()
        batch = len(tokens)
        zeros = torch.zeros(batch, self.hidden_size)
        state = (zeros, zeros)
        losses = []
        if raw_tokens:
            steps = range(1, len(self))
            x = self.embedding(tokens[:, 0])
        else:
            steps = range(len(self))
            x = self.start.expand(batch, -1)
        for t in steps:
            state = self.cell(x, state)
            logits = self.logits(t, state[0])
            if masks is not None:
                logits = logits.masked_fill(~masks[t], float("-inf"))
            if double_softmax:
                logits = torch.softmax(logits, dim=1)  # the reference's CE on probabilities
            losses.append(F.cross_entropy(logits, tokens[:, t]))
            x = self.embedding(tokens[:, t]) if raw_tokens else self.token_input(t, tokens[:, t])
        return torch.stack(losses).mean()
