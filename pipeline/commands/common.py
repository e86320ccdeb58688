"""What the commands share: exit codes, the --workers/--ray-address arguments, document globs."""
from __future__ import annotations

import argparse

from ...core import io
from ...core.io import InputError

EXIT_OK, EXIT_BUG, EXIT_USER, EXIT_REJECTS, EXIT_INCONSISTENT = 0, 1, 2, 3, 4
# a source written more times over than this (proportion) needs --yes: a typo (1000 for 1.0) would
# fill a disk; OLMo's mixes repeat a source at most a few times
MAX_REPEATS_WITHOUT_YES = 10


def workers(value: str) -> int:
    """argparse type of --workers: a whole number, at least 1."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of worker processes, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def add_ray_args(p: argparse.ArgumentParser) -> None:
    """--workers / --ray-address, shared by every command that runs on Ray."""
    p.add_argument("--workers", "-w", type=workers, help="local Ray worker processes (default: all cores)")
    p.add_argument("--ray-address", help="join an existing Ray cluster at this address instead of starting one")


def expand(patterns: list[str]) -> list[str]:
    """The document files --documents names (files or globs, local or URLs); none is a user error."""
    paths = io.expand_globs("", patterns) if patterns else []
    if not paths:
        raise InputError(f"--documents {' '.join(patterns)} matched no document files")
    return paths
