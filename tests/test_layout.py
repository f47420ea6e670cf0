"""The import directions of DESIGN.md hold: searchspaces and nasbench never import torch; supernets never
imports strategies or nas; strategies never imports nas."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("package, forbidden", [
    ("searchspaces", ("torch", "nasbench", "supernets", "strategies", "nas")),
    ("nasbench", ("torch", "supernets", "strategies", "nas")),
    ("supernets", ("strategies", "nas", "nasbench")),
    ("strategies", ("nas", "nasbench")),
])
def test_import_directions(package, forbidden):
    code = (f"import sys, {package}\n"
            f"bad = [m for m in {forbidden!r} if m in sys.modules]\n"
            "print(','.join(bad))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"{package} imports {result.stdout.strip()}"
