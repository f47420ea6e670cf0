"""What the registries hold, in words: `nas list` and the README's tables of spaces and strategies read it here,
so a space or strategy that registers appears in both without anyone writing its row."""

from __future__ import annotations

import searchspaces
import strategies
import supernets


def space_capabilities(name: str) -> list[str]:
    """What a registered space offers: the build modes in which its supernet runs relaxed archs, per-candidate
    gradients, FLOPs counters, cost terms, identical-network classes, and the commands that train its archs from
    scratch."""
    space = searchspaces.entry(name)
    out = []
    if name in supernets.names():
        caps = supernets.entry(name).capabilities
        out.append("relaxed in " + "/".join(caps.relaxations) if caps.relaxations else "single paths only")
        if caps.choice_gradients:
            out.append("per-candidate gradients")
    else:
        out.append("no supernet")
    if space.has_flops:
        out.append("FLOPs" + (f" ({', '.join(space.flops_counters)})" if space.flops_counters else ""))
    if space.cost_term_kinds:
        out.append(f"cost terms ({', '.join(space.cost_term_kinds)})")
    if space.has_equivalences:
        out.append("identical-network classes")
    if name in supernets.names() and supernets.entry(name).standalone is not None:
        out.append("nas bench build")
    if name in supernets.names() and supernets.entry(name).final_recipe is not None:
        out.append("nas train")
    return out


def strategies_fitting(space: str) -> list[str]:
    """The registered strategies that run on the space with their default options: the space's supernet runs their
    kind of path in some build mode, takes its kind of input (images or text), and the strategy accepts the space
    (`check_space`)."""
    if space not in supernets.names():
        return []
    registered = supernets.entry(space)
    caps, instance = registered.capabilities, searchspaces.get(space)
    fitting = []
    for entry in strategies.entries():
        if entry.strategy_class.inputs != registered.inputs:
            continue
        strategy = entry.create()
        try:
            strategy.check_space(instance)
        except ValueError:
            continue
        if caps.accepts(strategy.mode()):
            fitting.append(entry.name)
    return fitting


def spaces_table() -> str:
    """A Markdown table of every registered space: what it is, its size, what its supernet can do, which
    strategies run on it."""
    lines = ["| space | what it is | encodings | capabilities | strategies |", "|---|---|---|---|---|"]
    for entry in searchspaces.entries():
        size = entry.create().size()
        lines.append(f"| `{entry.name}` | {entry.description} | {size:,} | {'; '.join(space_capabilities(entry.name))}"
                     f" | {', '.join(strategies_fitting(entry.name)) or '-'} |")
    return "\n".join(lines)


def strategies_table() -> str:
    """A Markdown table of every registered strategy: what it does, the kind of path it trains, its options."""
    lines = ["| strategy | what it does | path | options (default) |", "|---|---|---|---|"]
    for entry in strategies.entries():
        options = ", ".join(f"`{k}` ({v})" for k, v in entry.defaults().items()) or "-"
        lines.append(f"| `{entry.name}` | {entry.description} | {entry.create().mode()} | {options} |")
    return "\n".join(lines)
