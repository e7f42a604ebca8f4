"""Placeholder: this area's commands are being built (see the issues)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction, train: argparse._SubParsersAction) -> None:
    """Add this area's sub-commands (none yet)."""
