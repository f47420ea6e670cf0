"""One epoch of plain supervised training of a standalone network (bench build's per-arch job, `nas train`)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .runtime import autocast


def train_epoch(model: torch.nn.Module, split, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, *,
                batch_size: int, generator: torch.Generator, device: torch.device, amp: bool = False,
                grad_clip: float = 0.0, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                aux_weight: float = 0.0) -> tuple[float, float]:
    """Train one epoch (shuffled by `generator`, last partial batch dropped); returns (mean loss, accuracy %).

    `transform` augments each batch on the device (cutout); a model returning `(logits, aux_logits)` in training
    mode adds `aux_weight` times the auxiliary loss. The host syncs once, at the end.
    """
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    for batch in split.batches(batch_size, shuffle=True, generator=generator, drop_last=True):
        x = transform(batch.x) if transform is not None else batch.x
        with autocast(device, amp):
            out = model(x)
            logits, aux = out if isinstance(out, tuple) else (out, None)
            loss = F.cross_entropy(logits.float(), batch.y)
            if aux is not None and aux_weight > 0:
                loss = loss + aux_weight * F.cross_entropy(aux.float(), batch.y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip, foreach=True)
        scaler.step(optimizer)
        scaler.update()
        loss_sum += loss.detach() * batch.y.shape[0]
        correct += (logits.detach().argmax(1) == batch.y).sum()
        seen += batch.y.shape[0]
    return loss_sum.item() / max(seen, 1), 100.0 * correct.item() / max(seen, 1)
