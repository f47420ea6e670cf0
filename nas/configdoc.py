"""`nas config keys`: every config key of a space and strategy, documented from its typed declaration.

Each row is a key, what it accepts, its declared default (`nas.schema`, the supernet constructor, the strategy's
`OPTIONS`), its help, and the value the presets of the chosen space, strategy and dataset give it where that
differs (`configs/`), so that what is printed is what `nas search` with the same flags starts from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from searchspaces.options import yaml_text

from . import config as cfg
from . import schema
from .errors import UserError

NAME_KEYS = ("space.name", "strategy.name", "data.name")  # what the listing is for: its header names them


@dataclass(frozen=True)
class KeyDoc:
    """The documentation of one config key."""

    key: str
    kind: str
    accepted: str
    default: Any
    help: str
    preset: Any = None  # the value after the presets, where they change the default
    preset_changes: bool = False

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready mapping of the row."""
        return asdict(self)


def key_docs(space: str | None = None, strategy: str | None = None,
             dataset: str | None = None) -> tuple[list[KeyDoc], str | None]:
    """The rows of `nas config keys`: every key a run with this space, strategy and dataset accepts (defaults: the
    schema's), in config order, and why the presets are not shown when these cannot run together (else None).
    UserError (one sentence) for an unknown space, strategy or dataset."""
    flags = {"space.name": space, "strategy.name": strategy, "data.name": dataset}
    for key, value in flags.items():
        if value is not None:
            try:
                schema.SCHEMA[key].check(key, value)
            except ValueError as exc:
                raise UserError(str(exc)) from None
    try:
        declared = schema.keys(space, strategy)
    except ValueError as exc:  # a space without a supernet
        raise UserError(str(exc)) from None
    try:
        resolved, why = cfg.resolve(flags=flags), None
    except UserError as exc:  # a combination that cannot run (the strategy does not fit the space): no presets
        resolved, why = None, str(exc)
    rows = []
    for item in declared:
        option = item.option
        value = cfg.get(resolved, item.key) if resolved is not None else option.default
        rows.append(KeyDoc(item.key, option.kind, option.accepted(), option.default, option.help, value,
                           value != option.default))
    return rows, why


def render(rows: list[KeyDoc], space: str, strategy: str, dataset: str, why: str | None = None) -> str:
    """The rows as text: `key = default`, what is accepted and the help indented below, the presets' value where
    they change it; `why` says why no presets are shown."""
    lines = [f"config keys of nas search --space {space} --strategy {strategy} --dataset {dataset}",
             "(key = declared default; what it accepts; what it does; set any with --set KEY=VALUE)"]
    if why:
        lines.append(f"(presets not shown: this combination does not run: {why})")
    for row in rows:
        head = f"{row.key} = {yaml_text(row.default)}"
        if row.preset_changes and row.key not in NAME_KEYS:
            head += f"  (the presets here: {yaml_text(row.preset)})"
        lines.append(head)
        lines.append(f"    {row.accepted}" + (f"; {row.help}" if row.help else ""))
    return "\n".join(lines)
