"""Command line of the trainer, meant to be mounted as `dolma-prep train` / `dolma-prep export-hf`.

    train CONFIG [--data RUN_OUTPUT] [--max-steps N] [--save-folder DIR] [--set key=value ...]
    export-hf CHECKPOINT OUT [--dtype float32|bfloat16|float16]

`train` runs in this process (one device, no process group). For several devices launch the
same arguments with torchrun: `torchrun --nproc_per_node=N -m dolma_prep.training.train CONFIG ...`.
"""

from __future__ import annotations

import argparse
import sys


def build_parser(prog: str = "dolma-prep") -> argparse.ArgumentParser:
    from .train import add_train_arguments

    parser = argparse.ArgumentParser(prog=prog, description="OLMo 1.7 trainer")
    commands = parser.add_subparsers(dest="command", required=True)
    add_train_arguments(commands.add_parser("train", help="train or resume a model"))
    export = commands.add_parser("export-hf", help="convert a checkpoint to Hugging Face OlmoForCausalLM")
    export.add_argument("checkpoint", help="a step{N}-tokens{M}B checkpoint directory")
    export.add_argument("out", help="output folder (config.json + safetensors)")
    export.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    return parser


def main(argv: list[str]) -> int:
    """Run `train ...` or `export-hf ...`; returns the exit status."""
    args = build_parser().parse_args(argv)
    from .train import config_from_args, setup_logging, train

    setup_logging()
    try:
        if args.command == "train":
            train(config_from_args(args))
        else:
            from .export_hf import export_checkpoint

            print(export_checkpoint(args.checkpoint, args.out, dtype=args.dtype))
    except (ValueError, FileNotFoundError) as e:  # config, manifest and data errors name their source
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
