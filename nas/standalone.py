"""Train one architecture stand-alone, from scratch: the per-arch job of `nas bench build`.

It is a plain function of (arch string, settings) returning plain data, so a cluster scheduler (Ray Tune)
can run it anywhere. The network is the benchmark's training configuration (affine BN, running statistics),
initialised from a seed derived from (seed, arch), trained with SGD + Nesterov + cosine, and evaluated in eval
mode with its running statistics.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

import searchspaces
import supernets

from . import data as datasets
from .engine import Schedule
from .evaluate import accuracy_and_loss
from .runtime import derive_seed, epoch_generator, select_device
from .supervised import train_epoch

STREAM_STANDALONE = 11


@dataclass(frozen=True)
class StandaloneSettings:
    """The fixed training protocol of every arch of one benchmark (recorded in its meta.json)."""

    space: str = "nb201"
    dataset: str = "digits"
    data_dir: str | None = None
    valid_fraction: float = 0.2
    split_seed: int = 0
    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.1
    lr_min: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    grad_clip: float = 5.0
    # network sizes; each space's registered `standalone` reads the ones its network has
    C: int = 16  # nb201
    N: int = 5  # nb201
    width_mult: float = 1.0  # mobilenet
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    eval_batch_size: int = 512

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def spaces() -> tuple[str, ...]:
    """The spaces whose archs `nas bench build` trains: those whose supernet registers a `standalone` network (the
    exported child, trained from scratch)."""
    return tuple(e.space for e in supernets.entries() if e.standalone is not None)


def network_options(s: StandaloneSettings, bundle) -> tuple[dict[str, Any], dict[str, Any]]:
    """Supernet build options for the stand-alone network (the space's registered `standalone`: affine BN with
    running statistics) and the task of its analytic costs (the options the space declares in COST_OPTIONS)."""
    registered = supernets.entry(s.space) if s.space in supernets.names() else None
    if registered is None or registered.standalone is None:
        raise ValueError(f"nas bench build trains archs of {', '.join(spaces())}, not {s.space!r}")
    options = registered.standalone(s.as_dict(), bundle.image_size)
    task = dict(num_classes=bundle.num_classes, in_channels=bundle.in_channels, image_size=bundle.image_size)
    cost_options = searchspaces.entry(s.space).cost_options
    task.update({k: v for k, v in registered.resolve(options).items() if k in cost_options})
    return options, task


def train_arch(arch_str: str, settings: StandaloneSettings | dict[str, Any]) -> dict[str, Any]:
    """Train `arch_str` from scratch under `settings`; returns test/valid accuracy, params, FLOPs, seconds."""
    s = settings if isinstance(settings, StandaloneSettings) else StandaloneSettings(**settings)
    started = time.perf_counter()
    device = select_device(s.device)
    space = searchspaces.get(s.space)
    arch = space.parse(arch_str)
    bundle = datasets.load(s.dataset, data_dir=s.data_dir, valid_fraction=s.valid_fraction, split_seed=s.split_seed,
                           device=device)
    torch.manual_seed(derive_seed(s.seed, STREAM_STANDALONE, *arch.codes()))
    options, task = network_options(s, bundle)
    template = supernets.build(space, num_classes=bundle.num_classes, in_channels=bundle.in_channels, **options)
    model = template.export(arch, inherit=False).to(device)
    del template
    optimizer = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum, nesterov=s.nesterov,
                                weight_decay=s.weight_decay)
    steps = bundle.train.num_batches(s.batch_size, drop_last=True)
    schedule = Schedule(s.lr, s.lr_min, s.epochs, steps, per_step=False)
    scaler = torch.amp.GradScaler("cuda", enabled=s.amp and device.type == "cuda")
    final_loss = float("nan")
    for epoch in range(s.epochs):
        for group in optimizer.param_groups:
            group["lr"] = schedule(epoch, 0)
        generator = epoch_generator(derive_seed(s.seed, STREAM_STANDALONE), epoch)
        final_loss, _ = train_epoch(model, bundle.train, optimizer, scaler, batch_size=s.batch_size,
                                    generator=generator, device=device, amp=s.amp, grad_clip=s.grad_clip)
    test_acc, test_loss = accuracy_and_loss(model, bundle.test, s.eval_batch_size, device, s.amp)
    valid_acc, valid_loss = (accuracy_and_loss(model, bundle.valid, s.eval_batch_size, device, s.amp)
                             if bundle.valid else (None, None))
    return {
        "arch": arch.to_string(),
        "seed": s.seed,
        "test_acc": test_acc,
        "valid_acc": valid_acc,
        "test_loss": test_loss,
        "valid_loss": valid_loss,
        "params": space.params(arch, **task),
        "flops": space.flops(arch, **task),
        "final_train_loss": final_loss,
        "seconds": round(time.perf_counter() - started, 3),
        "device": str(device),
    }
