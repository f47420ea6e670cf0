"""The face of supernas: training engine, data, config, the `nas` command.

Nothing else in the project imports this package (DESIGN.md); the CLI, tests and notebooks do.
"""

__version__ = "0.1.0"
