"""Benchmarks: WHAT IS TRUE about archs (ground-truth tables and ranking metrics). No torch.

The loaders and metrics arrive with the ranking-consistency issue; the package exists so that the layout
and the import directions of DESIGN.md hold from the start.
"""
