"""Command-line helpers shared by the benchmark scripts: one-line errors with exit status 2."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad option in one line (no usage block) and exits with status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_at_least(minimum: int, kind: str) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum`, refused in one line otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {value}")
        return value

    return parse


positive_int = int_at_least(1, "positive")
non_negative_int = int_at_least(0, "non-negative")


def key_values(parser: argparse.ArgumentParser, option: str, items: Sequence[str], known: Mapping[str, Any],
               where: str) -> dict[str, Any]:
    """`KEY=VALUE` items (values read as YAML: `0.35`, `true`, `cifar`) over the defaults `known`; an item that is
    not `KEY=VALUE` with a key of `known` is refused in one line naming the accepted keys (`where` says whose)."""
    values = dict(known)
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or key not in known:
            parser.error(f"argument {option}: {item!r} is not KEY=VALUE with a key of {where}; accepted keys: "
                         f"{', '.join(known) or 'none'}")
        values[key] = yaml.safe_load(raw)
    return values
