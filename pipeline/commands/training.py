"""`dolma-prep train` and `dolma-prep export-hf`: the bundled trainer's own command line (training/cli.py).

Listed here for `dolma-prep --help` only: cli.main hands their arguments to the trainer before
parsing, so they declare none (and no `main`) here.
"""
from __future__ import annotations

import argparse

NAMES = ("train", "export-hf")
HELP = {
    "train": "train the bundled OLMo model on a run's arrays (`dolma-prep train --help`)",
    "export-hf": "export a training checkpoint to Hugging Face format (`dolma-prep export-hf --help`)",
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    for name in NAMES:
        subparsers.add_parser(name, add_help=False, help=HELP[name])
