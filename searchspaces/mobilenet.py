"""The once-for-all MobileNetV3 space: elastic depth per stage, elastic kernel and expand ratio per block.

Layout (MobileNetV3-Large as in once-for-all's `OFAMobileNetV3`): a 3x3 stem conv (16 channels, BN, h-swish),
a fixed first block (depthwise 3x3, expand 1, 16 -> 16, ReLU, residual), then five elastic stages

    stage   width  stride  activation  SE
    1       24     2       relu        no
    2       40     2       relu        yes
    3       80     2       h_swish     no
    4       112    1       h_swish     yes
    5       160    2       h_swish     yes

of up to 4 inverted-residual blocks each (the first block of a stage strides and changes width; the others are
residual), a 1x1 conv to 960 channels (BN, h-swish), global average pooling, a 1x1 conv to 1280 (no BN,
h-swish) and the linear classifier. A width multiplier scales every width (`make_divisible(w * mult, 8)`).
Hidden width of a block with expand ratio e over `c` input channels: `make_divisible(round(c * e), 8)`.

Stride schedules: `imagenet` (stem stride 2, stage strides 2, 2, 2, 1, 2: 224 -> 7) and, for small inputs
such as CIFAR's 32x32, `cifar` (stem stride 1, stage strides 1, 2, 2, 1, 2: 32 -> 4; the adaptation of the
CIFAR MobileNetV2 ports, which drop the first two downsamplings).

Decisions (specs/ALGORITHMS.md §0.1): `d1..d5` in {2, 3, 4}, then `k{s}_{b}` in {3, 5, 7} and `e{s}_{b}` in
{3, 4, 6} for stage s = 1..5, block b = 1..4. Choices of blocks beyond a stage's depth do not exist in the
network; they are nulled to the first candidate (3) before hashing, so two encodings of one network are one
arch. The canonical string lists the active blocks per stage, stages separated by `|`:
`k7e6-k5e4|k3e3-k3e3-k5e6|...`.

Costs (`params`, `flops`) are analytic and exact for the standalone network that `supernets` exports (affine
BN counted; FLOPs = multiply-adds of convolutions and linear layers, the once-for-all convention). Both are a
constant plus one term per block that depends only on (its stage's depth, its kernel, its expand ratio), which
`cost_terms` exposes so that a strategy can compute a differentiable FLOPs estimate from relaxed choices.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .core import Arch, Decision, FlopsConvention, Space, SpaceError
from .registry import register_space

DEPTHS: tuple[int, ...] = (2, 3, 4)
KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANDS: tuple[int, ...] = (3, 4, 6)
NUM_STAGES = 5
MAX_BLOCKS = 4
SCHEDULES: dict[str, tuple[int, tuple[int, ...]]] = {
    "imagenet": (2, (2, 2, 2, 1, 2)),
    "cifar": (1, (1, 2, 2, 1, 2)),
}


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round `value` to the nearest multiple of `divisor` (at least `min_value`, default `divisor`), never more
    than 10% below `value`: the channel rounding of the MobileNet family."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class Stage:
    width: int
    stride: int
    activation: str
    se: bool


BASE_STAGES: tuple[Stage, ...] = (
    Stage(24, 2, "relu", False),
    Stage(40, 2, "relu", True),
    Stage(80, 2, "h_swish", False),
    Stage(112, 1, "h_swish", True),
    Stage(160, 2, "h_swish", True),
)
STEM_WIDTH, FIRST_BLOCK_WIDTH, FINAL_EXPAND_WIDTH, LAST_CHANNEL = 16, 16, 960, 1280


def _out_size(size: int, stride: int) -> int:
    """Spatial size after a `same`-padded odd-kernel conv with `stride`."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class MobileNetLayout:
    """Widths, strides and feature-map sizes of the network for one task; shared by the analytic costs and the
    supernet, so both describe the same network."""

    num_classes: int = 1000
    in_channels: int = 3
    image_size: int = 224
    width_mult: float = 1.0
    schedule: str = "imagenet"

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise SpaceError(f"unknown stride schedule {self.schedule!r}; accepted: {', '.join(SCHEDULES)}")
        if not self.width_mult > 0:
            raise SpaceError(f"width_mult must be positive, got {self.width_mult}")

    def width(self, base: int) -> int:
        return make_divisible(base * self.width_mult, 8)

    @property
    def stem_width(self) -> int:
        return self.width(STEM_WIDTH)

    @property
    def first_block_width(self) -> int:
        return self.width(FIRST_BLOCK_WIDTH)

    @property
    def final_expand_width(self) -> int:
        return self.width(FINAL_EXPAND_WIDTH)

    @property
    def last_channel(self) -> int:
        # once-for-all keeps 1280 unless the multiplier grows the network
        return self.width(LAST_CHANNEL) if self.width_mult > 1.0 else LAST_CHANNEL

    @property
    def stem_stride(self) -> int:
        return SCHEDULES[self.schedule][0]

    def stages(self) -> tuple[Stage, ...]:
        strides = SCHEDULES[self.schedule][1]
        return tuple(Stage(self.width(s.width), stride, s.activation, s.se) for s, stride in zip(BASE_STAGES, strides))

    def stem_size(self) -> int:
        return _out_size(self.image_size, self.stem_stride)

    def stage_sizes(self) -> list[tuple[int, int]]:
        """(input size, output size) of every stage."""
        size, out = self.stem_size(), []
        for stage in self.stages():
            out.append((size, _out_size(size, stage.stride)))
            size = out[-1][1]
        return out

    def hidden(self, in_channels: int, expand: float) -> int:
        return make_divisible(round(in_channels * expand), 8)


def block_costs(layout: MobileNetLayout, stage_index: int, block: int, kernel: int, expand: float) -> tuple[int, int]:
    """(params, FLOPs) of block `block` (0-based) of stage `stage_index` (0-based) with kernel and expand ratio."""
    stages = layout.stages()
    stage = stages[stage_index]
    c_in = (stages[stage_index - 1].width if stage_index else layout.first_block_width) if block == 0 else stage.width
    size_in, size_out = layout.stage_sizes()[stage_index]
    if block:
        size_in = size_out
    hidden = layout.hidden(c_in, expand)
    params = c_in * hidden + 2 * hidden  # expand conv + BN
    params += hidden * kernel * kernel + 2 * hidden  # depthwise + BN
    params += hidden * stage.width + 2 * stage.width  # project + BN
    flops = size_in * size_in * c_in * hidden + size_out * size_out * (hidden * kernel * kernel + hidden * stage.width)
    if stage.se:
        squeeze = make_divisible(hidden // 4, 8)
        params += 2 * hidden * squeeze + squeeze + hidden
        flops += 2 * hidden * squeeze
    return params, flops


def fixed_costs(layout: MobileNetLayout) -> tuple[int, int]:
    """(params, FLOPs) of everything outside the elastic stages: stem, first block, final layers, classifier."""
    c0, c1, size = layout.stem_width, layout.first_block_width, layout.stem_size()
    params = layout.in_channels * c0 * 9 + 2 * c0
    flops = size * size * layout.in_channels * c0 * 9
    params += c0 * 9 + 2 * c0 + c0 * c1 + 2 * c1  # first block: depthwise 3x3 + BN, project + BN
    flops += size * size * (c0 * 9 + c0 * c1)
    last_width, last_size = layout.stages()[-1].width, layout.stage_sizes()[-1][1]
    fe, lc = layout.final_expand_width, layout.last_channel
    params += last_width * fe + 2 * fe + fe * lc + lc * layout.num_classes + layout.num_classes
    flops += last_size * last_size * last_width * fe + fe * lc + lc * layout.num_classes
    return params, flops


@functools.lru_cache(maxsize=64)
def _block_tables(layout: MobileNetLayout) -> tuple[tuple[int, int], list[list[dict[tuple, tuple[int, int]]]]]:
    """Fixed costs and `(params, flops)` per stage, block and (kernel, expand) of one layout, computed once: a cost
    query is then a sum of lookups (about 10 us instead of 200 us, which matters once per training step)."""
    tables = [[{(k, e): block_costs(layout, s, b, k, e) for k in KERNELS for e in EXPANDS} for b in range(MAX_BLOCKS)]
              for s in range(NUM_STAGES)]
    return fixed_costs(layout), tables


@register_space("once-for-all MobileNetV3: 5 stages, depth {2,3,4}, kernel {3,5,7}, expand {3,4,6} per block",
                example="k3e3-k5e4|k7e6-k3e3|k3e3-k3e3|k5e6-k5e6|k3e4-k3e4")
class MobileNetSpace(Space):
    """Once-for-all MobileNetV3: 5 stages x up to 4 blocks, depth {2,3,4}, kernel {3,5,7}, expand {3,4,6}."""

    name = "mobilenet"
    flops_convention = FlopsConvention(bias=False, pools=False)
    cost_term_kinds = ("params", "flops")
    COST_OPTIONS: tuple[str, ...] = ("width_mult", "schedule")

    def __init__(self, allowed: Mapping[str, Sequence[Hashable]] | None = None):
        decisions = [Decision(f"d{s}", DEPTHS) for s in range(1, NUM_STAGES + 1)]
        decisions += [Decision(f"k{s}_{b}", KERNELS) for s in range(1, NUM_STAGES + 1) for b in range(1, 5)]
        decisions += [Decision(f"e{s}_{b}", EXPANDS) for s in range(1, NUM_STAGES + 1) for b in range(1, 5)]
        super().__init__(decisions, allowed)

    # --- structure -------------------------------------------------------------------------------
    @staticmethod
    def _k(stage: int, block: int) -> int:
        """Position of `k{stage+1}_{block+1}` in decision order (0-based stage and block)."""
        return NUM_STAGES + MAX_BLOCKS * stage + block

    @staticmethod
    def _e(stage: int, block: int) -> int:
        return NUM_STAGES * (1 + MAX_BLOCKS) + MAX_BLOCKS * stage + block

    def depths(self, arch: Arch) -> tuple[int, ...]:
        return tuple(arch.choices[:NUM_STAGES])

    def blocks(self, arch: Arch) -> list[list[tuple[int, int]]]:
        """Per stage, the `(kernel, expand)` of its active blocks."""
        c = arch.choices
        return [[(c[self._k(s, b)], c[self._e(s, b)]) for b in range(c[s])] for s in range(NUM_STAGES)]

    def _canonical(self, values: Sequence[Hashable]) -> list[Hashable]:
        values = list(values)
        for s in range(NUM_STAGES):
            for b in range(values[s], MAX_BLOCKS):
                values[self._k(s, b)] = KERNELS[0]
                values[self._e(s, b)] = EXPANDS[0]
        return values

    def make(self, choices: Mapping[str, Hashable] | Sequence[Hashable]) -> Arch:
        return Arch(self, self._canonical(super().make(choices).choices))

    def decode(self, codes: Sequence[int]) -> Arch:
        return Arch(self, self._canonical(super().decode(codes).choices))

    def contains(self, arch: Arch) -> bool:
        """Depths allowed, and the kernel and expand ratio of every active block allowed (inactive blocks have
        no choice to check)."""
        c = arch.choices
        if any(c[s] not in self.allowed[s] for s in range(NUM_STAGES)):
            return False
        return all(c[i] in self.allowed[i] for s in range(NUM_STAGES) for b in range(c[s])
                   for i in (self._k(s, b), self._e(s, b)))

    # --- string form -----------------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        return "|".join("-".join(f"k{k}e{e}" for k, e in stage) for stage in self.blocks(arch))

    def parse(self, text: str) -> Arch:
        stages = text.strip().split("|")
        hint = ("a MobileNet arch is 5 stages separated by '|', each 2-4 blocks 'k<kernel>e<expand>' joined by '-', "
                "e.g. 'k3e3-k5e4|k7e6-k3e3|k3e3-k3e3|k5e6-k5e6|k3e4-k3e4'")
        if len(stages) != NUM_STAGES:
            raise SpaceError(f"cannot parse {text!r}: {hint}")
        values: list[Hashable] = [KERNELS[0]] * len(self.decisions)
        for s, stage in enumerate(stages):
            blocks = stage.split("-")
            if len(blocks) not in DEPTHS:
                raise SpaceError(f"stage {s + 1} of {text!r} has {len(blocks)} blocks; accepted depths: "
                                 f"{', '.join(map(str, DEPTHS))}")
            values[s] = len(blocks)
            for b, block in enumerate(blocks):
                if not (block.startswith("k") and "e" in block):
                    raise SpaceError(f"cannot parse block {block!r} of {text!r}: {hint}")
                k_text, e_text = block[1:].split("e", 1)
                try:
                    values[self._k(s, b)], values[self._e(s, b)] = int(k_text), int(e_text)
                except ValueError:
                    raise SpaceError(f"cannot parse block {block!r} of {text!r}: {hint}") from None
        for s in range(NUM_STAGES):
            for b in range(values[s], MAX_BLOCKS):
                values[self._e(s, b)] = EXPANDS[0]
        return self.make(values)

    # --- sampling, enumeration, evolution --------------------------------------------------------
    def size(self) -> int:
        """Number of distinct networks (canonical archs) in this (sub-)space."""
        total = 1
        for s in range(NUM_STAGES):
            per_block = [len(self.allowed[self._k(s, b)]) * len(self.allowed[self._e(s, b)]) for b in range(4)]
            total *= sum(int(np.prod(per_block[:d], dtype=object)) for d in self.allowed[s])
        return total

    def allowed_next(self, position: int, prefix: np.ndarray) -> np.ndarray:
        """The mask of the decision, except that a block beyond its stage's chosen depth (the depths come first)
        has only its nulled value: a sequential sampler then spends no choice on blocks that do not run."""
        allowed = super().allowed_next(position, prefix)
        if position < NUM_STAGES:
            return allowed
        offset = position - NUM_STAGES
        kind, rest = divmod(offset, NUM_STAGES * MAX_BLOCKS)
        stage, block = divmod(rest, MAX_BLOCKS)
        depths = np.asarray(self.decisions[stage].candidates)[np.asarray(prefix)[:, stage]]
        inactive = depths <= block
        null = self.decisions[position].candidates.index(KERNELS[0] if kind == 0 else EXPANDS[0])
        allowed[inactive] = False
        allowed[inactive, null] = True
        return allowed

    def sample(self, rng: np.random.Generator, valid_only: bool = False, max_tries: int = 10_000) -> Arch:
        """Depth per stage, then kernel and expand ratio per block, each uniform over the allowed values (the
        once-for-all sampler); the choices of inactive blocks are nulled."""
        return Arch(self, self._canonical(super().sample(rng).choices))

    def sample_codes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        codes = super().sample_codes(rng, n)
        return np.array([self.make([d.candidates[c] for d, c in zip(self.decisions, row)]).codes() for row in codes])

    def enumerate(self, valid_only: bool = False, limit: int = 10_000_000) -> Iterator[Arch]:
        """Every distinct network of a (small, restricted) sub-space."""
        if self.size() > limit:
            raise SpaceError(f"space {self.name!r} has {self.size()} archs, too many to enumerate (limit {limit})")
        per_stage = []
        for s in range(NUM_STAGES):
            options = []
            for d in self.allowed[s]:
                choices = [itertools.product(self.allowed[self._k(s, b)], self.allowed[self._e(s, b)])
                           for b in range(d)]
                options += [(d, blocks) for blocks in itertools.product(*choices)]
            per_stage.append(options)
        for combo in itertools.product(*per_stage):
            yield self._from_stages(combo)

    def _from_stages(self, stages: Sequence[tuple[int, Sequence[tuple[int, int]]]]) -> Arch:
        values: list[Hashable] = [KERNELS[0]] * NUM_STAGES + [KERNELS[0]] * 20 + [EXPANDS[0]] * 20
        for s, (depth, blocks) in enumerate(stages):
            values[s] = depth
            for b, (k, e) in enumerate(blocks):
                values[self._k(s, b)], values[self._e(s, b)] = k, e
        return Arch(self, values)

    def mutate(self, arch: Arch, rng: np.random.Generator) -> Arch:
        """Change one effective choice: a stage depth (new blocks get uniform allowed choices) or the kernel or
        expand ratio of an active block."""
        c = list(arch.choices)
        options = [s for s in range(NUM_STAGES) if len(self.allowed[s]) > 1]
        options += [i for s in range(NUM_STAGES) for b in range(c[s]) for i in (self._k(s, b), self._e(s, b))
                    if len(self.allowed[i]) > 1]
        if not options:
            return arch
        i = options[int(rng.integers(0, len(options)))]
        others = [v for v in self.allowed[i] if v != c[i]]
        c[i] = others[int(rng.integers(0, len(others)))]
        if i < NUM_STAGES:
            for b in range(arch.choices[i], c[i]):
                for j in (self._k(i, b), self._e(i, b)):
                    c[j] = self.allowed[j][int(rng.integers(0, len(self.allowed[j])))]
        return Arch(self, self._canonical(c))

    def crossover(self, a: Arch, b: Arch, rng: np.random.Generator) -> Arch:
        """Stage-wise uniform crossover: each stage (its depth and blocks) from either parent."""
        take_a = rng.random(NUM_STAGES) < 0.5
        values = list(b.choices)
        for s in range(NUM_STAGES):
            if take_a[s]:
                for i in [s] + [f(s, blk) for blk in range(MAX_BLOCKS) for f in (self._k, self._e)]:
                    values[i] = a.choices[i]
        return Arch(self, values)

    def largest(self, **task: Any) -> Arch:
        """Deepest stages, largest kernels and expand ratios allowed (costs grow with each choice)."""
        return self.make([max(a) for a in self.allowed])

    def smallest(self, **task: Any) -> Arch:
        return self.make([min(a) for a in self.allowed])

    # --- costs -----------------------------------------------------------------------------------
    def layout(self, num_classes: int = 1000, in_channels: int = 3, image_size: int = 224, width_mult: float = 1.0,
               schedule: str = "auto", **_: Any) -> MobileNetLayout:
        """The network of a task; `schedule="auto"` takes `cifar` for inputs up to 64x64, else `imagenet`."""
        if schedule == "auto":
            schedule = "cifar" if image_size <= 64 else "imagenet"
        return MobileNetLayout(num_classes, in_channels, image_size, width_mult, schedule)

    def cost_terms(self, kind: str, **task: Any) -> tuple[int, list[tuple[tuple[str, ...], np.ndarray]]]:
        """`cost(arch) = constant + sum over terms of table[candidate indices of labels]` for `kind` in
        `params`/`flops`. One term per block over (stage depth, kernel, expand); 0 where the block is inactive.
        Multilinear in one-hot choice vectors, hence a differentiable relaxation that is exact at one-hot."""
        if kind not in ("params", "flops"):
            raise ValueError(f"unknown cost {kind!r}; accepted: params, flops")
        layout = self.layout(**task)
        position = 0 if kind == "params" else 1
        constant = fixed_costs(layout)[position]
        terms = []
        for s in range(NUM_STAGES):
            for b in range(MAX_BLOCKS):
                table = np.zeros((len(DEPTHS), len(KERNELS), len(EXPANDS)), dtype=np.int64)
                for (i, d), (j, k), (m, e) in itertools.product(enumerate(DEPTHS), enumerate(KERNELS),
                                                                 enumerate(EXPANDS)):
                    if b < d:
                        table[i, j, m] = block_costs(layout, s, b, k, e)[position]
                terms.append(((f"d{s + 1}", f"k{s + 1}_{b + 1}", f"e{s + 1}_{b + 1}"), table))
        return constant, terms

    def _cost(self, arch: Arch, position: int, task: dict[str, Any]) -> int:
        constant, tables = _block_tables(self.layout(**task))
        total = constant[position]
        for s, blocks in enumerate(self.blocks(arch)):
            total += sum(tables[s][b][(k, e)][position] for b, (k, e) in enumerate(blocks))
        return int(total)

    def params(self, arch: Arch, **task: Any) -> int:
        """Parameters of the exported standalone network (affine BN included)."""
        return self._cost(arch, 0, task)

    def flops(self, arch: Arch, **task: Any) -> int:
        """Multiply-adds of the convolutions and linear layers of the standalone network for one image."""
        return self._cost(arch, 1, task)
