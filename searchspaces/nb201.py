"""NAS-Bench-201: a cell of 4 nodes and 6 edges, 5 ops per edge, one genotype shared by all 15 cells.

Op and edge orders follow the benchmark exactly (specs/ALGORITHMS.md §0.1): ops
`none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3`; edges `1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2`.
The canonical string is the benchmark key `|o0~0|+|o1~0|o2~1|+|o3~0|o4~1|o5~2|`.

Parameter and FLOP counts are analytic, for the benchmark's network (NATS-Bench `TinyNetwork`): stem conv
3x3 + BN, three stages of N cells at C, 2C, 4C channels joined by ResNet basic blocks with stride 2, final
BN + ReLU, global pooling and a linear classifier. In the benchmark's training configuration BatchNorm is
affine and convolutions inside ReLU-Conv-BN have no bias (`bias = not affine`); supernets of PA&DA/GM-NAS
use `affine=False`, which drops BN weights and adds conv biases. Both are counted here.

Two operation counts: `flops` is the benchmark's own figure (conv and linear layers only, as its hooks sum
them; the published MFLOPs times 1e6), `macs` is supernas's count, which adds the average-pooling windows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core import Arch, Decision, FlopsConvention, Space, SpaceError
from .registry import register_space

if TYPE_CHECKING:
    import networkx as nx

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
EDGE_LABELS: tuple[str, ...] = tuple(f"{t}<-{s}" for t, s in EDGES)
PARAMETRIC_OPS: tuple[str, ...] = ("nor_conv_1x1", "nor_conv_3x3")
_KERNEL = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}


@register_space("NAS-Bench-201 cell: 6 edges x 5 ops, 15,625 archs, one genotype for all 15 cells",
                example="|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
class NB201Space(Space):
    """The NAS-Bench-201 cell space (15,625 encodings)."""

    name = "nb201"
    # the benchmark's count: conv and linear layers with their biases, no pooling (`flops`); `macs` adds the pools
    flops_convention = FlopsConvention(bias=True, pools=False)
    flops_counters = ("benchmark", "tensorwatch", "macs")
    # the standalone network keeps the supernet's macro structure
    COST_OPTIONS = ("C", "N")

    def __init__(self, allowed=None):
        super().__init__([Decision(label, OPS) for label in EDGE_LABELS], allowed)

    # --- canonical string ------------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        ops = arch.choices
        nodes = []
        for target in (1, 2, 3):
            nodes.append(
                "|" + "|".join(f"{ops[i]}~{s}" for i, (t, s) in enumerate(EDGES) if t == target) + "|"
            )
        return "+".join(nodes)

    def parse(self, text: str) -> Arch:
        """Parse a benchmark string such as `|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|`."""
        text = text.strip()
        example = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
        nodes = text.split("+")
        if len(nodes) != 3 or not all(n.startswith("|") and n.endswith("|") and len(n) > 2 for n in nodes):
            raise SpaceError(f"{text!r} is not an NB201 arch string; expected the form {example}")
        ops: dict[str, str] = {}
        for target, node in enumerate(nodes, start=1):
            items = node[1:-1].split("|")
            if len(items) != target:
                raise SpaceError(
                    f"node {target} of {text!r} must have {target} input edge(s), got {len(items)}; expected the "
                    f"form {example}"
                )
            for item in items:
                op, sep, source = item.partition("~")
                if not sep or not source.isdigit() or int(source) >= target:
                    raise SpaceError(f"{item!r} in {text!r} is not of the form op~source with source < {target}")
                label = f"{target}<-{int(source)}"
                if label in ops:
                    raise SpaceError(f"edge {label} appears twice in {text!r}")
                if op not in OPS:
                    raise SpaceError(f"unknown NB201 op {op!r} in {text!r}; accepted: {', '.join(OPS)}")
                ops[label] = op
        return self.make(ops)

    def op_idx(self, arch: Arch) -> str:
        """The benchmark's 6-digit op index string (e.g. `421211`), edges in benchmark order."""
        return "".join(str(c) for c in arch.codes())

    # --- validity --------------------------------------------------------------------------------
    def is_valid(self, arch: Arch) -> bool:
        """Whether node 3 is reachable from node 0 through non-`none` edges (GM-NAS rule)."""
        live = [op != "none" for op in arch.choices]
        e0, e1, e2, e3, e4, e5 = live
        return e3 or (e1 and e5) or (e0 and e4) or (e0 and e2 and e5)

    # --- graphs and equivalences (searchspaces/cellgraph.py) -------------------------------------
    has_equivalences = True

    def to_graph(self, arch: Arch) -> nx.DiGraph:
        """The cell as a networkx DAG: nodes 0..3 with `role`, non-`none` edges with `op` and `live`."""
        from .cellgraph import nb201_graph

        return nb201_graph(arch)

    def canonical(self, arch: Arch) -> Arch:
        """The representative of `arch`'s class of encodings of the same network: the member with the smallest
        op-code tuple over the whole NB201 space (it may lie outside a restricted sub-space)."""
        from .cellgraph import class_representative

        return self.decode(class_representative(arch.codes()))

    # --- analytic costs --------------------------------------------------------------------------
    def params(self, arch: Arch, num_classes: int = 10, C: int = 16, N: int = 5, in_channels: int = 3,
               affine: bool = True, **_: Any) -> int:
        """Parameters of the standalone network of `arch` (NB201 counts use `affine=True`)."""
        widths = (C, 2 * C, 4 * C)
        bn = 2 if affine else 0  # weight + bias per channel
        bias = 0 if affine else 1  # ReLU-Conv-BN convs carry a bias when BN is not affine
        total = in_channels * C * 9 + bn * C  # stem: conv 3x3 (no bias) + BN
        for c in widths:
            per_cell = sum(c * c * _KERNEL[op] ** 2 + bias * c + bn * c for op in arch.choices if op in _KERNEL)
            total += N * per_cell
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            total += c_in * c_out * 9 + (bias + bn) * c_out  # conv_a (stride 2)
            total += c_out * c_out * 9 + (bias + bn) * c_out  # conv_b
            total += c_in * c_out  # shortcut: avg-pool 2x2 + conv 1x1 without bias
        total += bn * widths[-1]  # last BN
        total += widths[-1] * num_classes + num_classes  # classifier
        return int(total)

    def flops(self, arch: Arch, num_classes: int = 10, C: int = 16, N: int = 5, in_channels: int = 3,
              image_size: int = 32, affine: bool = True, counter: str = "benchmark", **_: Any) -> int:
        """FLOPs of one image in NAS-Bench-201's own convention: the benchmark's published figure times 1e6.

        The benchmark counted FLOPs with the hooks of xautodl's `utils/flop_benchmark.py` (`get_model_infos` on
        `TinyNetwork`, one image) and reports `sum / 1e6` as MFLOPs. That sum covers `nn.Conv2d` (k*k*C_in*C_out
        per output position, + C_out per position with a bias) and `nn.Linear` (in*out + out) only: pooling
        layers get a hook but are left out of the sum, and BatchNorm, ReLU, `none`/skip edges, the node sums
        and global pooling are never counted. The 1x1 conv of each reduction block's shortcut counts, its
        2x2 average pool does not. Every non-`none` edge counts, also when its input node carries only zeros
        (the benchmark's network still runs it). The classifier counts its bias, so CIFAR-100 adds 90 * 65.

        This is the count that `search.max_flops` (`--max-flops`), ShiftNAS's bins and the `flops` columns of
        the NB201 tables use, so limits and figures read like the benchmark's. `macs` adds the pooling windows.

        `counter="tensorwatch"` gives instead the `flops` that NAS-Bench-Suite-Zero / NASLib publish for NB201
        (17.9586 M for index 0 on CIFAR-10): tensorwatch's `ModelStats` rules, which also count BN (2 per
        element when affine, 1 otherwise), the ReLU before each conv (per input element), average pools (k*k per
        output element) and global pooling ((size + 1)^2 per channel), and leave the classifier's bias out.
        `counter="macs"` is supernas's own count, `macs`.
        """
        if counter not in self.flops_counters:
            raise SpaceError(f"FLOPs counter {counter!r} is not known; accepted: {', '.join(self.flops_counters)}")
        if counter == "macs":
            return self.macs(arch, num_classes, C, N, in_channels, image_size, affine)
        total = 0
        for positions, macs_per_position, bias_per_position, _pool in self._layers(
                arch, num_classes, C, N, in_channels, image_size, affine):
            total += positions * (macs_per_position + bias_per_position)
        if counter == "tensorwatch":
            total += _tensorwatch_extra(arch, num_classes, C, N, image_size, affine)
        return total

    def macs(self, arch: Arch, num_classes: int = 10, C: int = 16, N: int = 5, in_channels: int = 3,
             image_size: int = 32, affine: bool = True, **_: Any) -> int:
        """Operations of one image by supernas's own count: `flops` plus every average-pooling window.

        Conv and linear layers as in `flops` (multiply-accumulates, + one add per output with a bias), and in
        addition k*k per output element of each cell's 3x3 average pool and of each reduction shortcut's 2x2
        average pool. It is what a hook on convs, linears and pools of the real network measures, and it is
        not the benchmark's figure (the benchmark leaves pooling out); see `flops` for that one.
        """
        total = 0
        for positions, macs_per_position, bias_per_position, pool in self._layers(
                arch, num_classes, C, N, in_channels, image_size, affine):
            total += positions * (macs_per_position + bias_per_position + pool)
        return total

    @staticmethod
    def _layers(arch: Arch, num_classes: int, C: int, N: int, in_channels: int, image_size: int,
                affine: bool) -> list[tuple[int, int, int, int]]:
        """The counted layers of the benchmark network of `arch` as `(output positions, multiply-accumulates
        per position, bias adds per position, pooling adds per position)`: one source for `flops` and `macs`."""
        bias = 0 if affine else 1  # ReLU-Conv-BN convs carry a bias exactly when BN is not affine
        widths = (C, 2 * C, 4 * C)
        sizes = (image_size, -(-image_size // 2), -(-image_size // 4))
        layers = [(image_size * image_size, in_channels * C * 9, 0, 0)]  # stem conv 3x3, no bias
        for c, s in zip(widths, sizes):
            for op in arch.choices:
                if op in _KERNEL:
                    layers += [(N * s * s, c * c * _KERNEL[op] ** 2, bias * c, 0)]
                elif op == "avg_pool_3x3":
                    layers += [(N * s * s, 0, 0, c * 9)]
        for c_in, c_out, s_out in zip(widths[:-1], widths[1:], sizes[1:]):
            pos = s_out * s_out
            layers += [(pos, c_in * c_out * 9, bias * c_out, 0),  # conv_a, stride 2
                       (pos, c_out * c_out * 9, bias * c_out, 0),  # conv_b
                       (pos, 0, 0, c_in * 4),  # shortcut: avg-pool 2x2 ...
                       (pos, c_in * c_out, 0, 0)]  # ... then conv 1x1 without bias
        layers += [(1, widths[-1] * num_classes, num_classes, 0)]  # classifier with bias
        return layers

    def largest(self, **task: Any) -> Arch:
        """All edges at the largest allowed parametric op (params are additive over edges)."""
        order = {op: rank for rank, op in enumerate(("none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1",
                                                     "nor_conv_3x3"))}
        return self.make([max(a, key=order.__getitem__) for a in self.allowed])

    def smallest(self, **task: Any) -> Arch:
        """All edges at the smallest allowed op (`none` < skip < pool < 1x1 < 3x3)."""
        order = {op: rank for rank, op in enumerate(("none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1",
                                                     "nor_conv_3x3"))}
        return self.make([min(a, key=order.__getitem__) for a in self.allowed])


def _tensorwatch_extra(arch: Arch, num_classes: int, C: int, N: int, image_size: int, affine: bool) -> int:
    """What tensorwatch's `ModelStats` counts on the NB201 network beyond the benchmark's conv + linear sum:
    BN per element (x2 when affine), the ReLU of every ReLU-Conv-BN per input element, average pools per output
    element times the window, global pooling as (size + 1)^2 per channel; minus the classifier bias it skips."""
    bn = 2 if affine else 1
    widths = (C, 2 * C, 4 * C)
    sizes = (image_size, -(-image_size // 2), -(-image_size // 4))
    total = bn * C * image_size * image_size  # stem BN
    for c, s in zip(widths, sizes):
        elements = c * s * s
        for op in arch.choices:
            if op in _KERNEL:
                total += N * (1 + bn) * elements  # ReLU on the edge input, BN on its output
            elif op == "avg_pool_3x3":
                total += N * 9 * elements
    for c_in, c_out, s_in, s_out in zip(widths[:-1], widths[1:], sizes[:-1], sizes[1:]):
        out = c_out * s_out * s_out
        total += c_in * s_in * s_in + bn * out  # conv_a: ReLU on its input, BN
        total += out + bn * out  # conv_b: ReLU, BN
        total += 4 * c_in * s_out * s_out  # shortcut's 2x2 average pool
    last = widths[-1] * sizes[-1] * sizes[-1]
    total += bn * last + last  # last BN and ReLU
    total += widths[-1] * (sizes[-1] + 1) ** 2  # global average pool
    return total - num_classes  # tensorwatch's Linear has no bias term
