"""`dolma-prep train-classifier`: a fastText classifier (quality, toxicity) from labelled sources."""
from __future__ import annotations

import argparse

from ...core.io import InputError
from .common import EXIT_OK

NAME = "train-classifier"
HELP = "train a fastText classifier (quality, toxicity) from labelled sources"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Train a fastText classifier from the labelled sources a YAML config "
                                          "declares, evaluate it on a held-out split (precision/recall/F1 per label), "
                                          "save the .bin and a JSON card of how it was trained. Reproducible with the "
                                          "config's seed.")
    p.add_argument("config", help="YAML config (see tests/fixtures/taggers/train_quality_sample.yaml)")
    p.set_defaults(fn=main)
    return p


def main(args: argparse.Namespace) -> int:
    from dolma_prep.taggers.train_classifier import train_classifier

    try:
        train_classifier(args.config)
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise InputError(f"{args.config}: {e}") from None
    return EXIT_OK
