"""The ``lrkit`` command line (placeholder until the CLI lands)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lrkit`` console script."""
    print("lrkit: schedules for PyTorch")
    return 0
