"""The `dolma-prep` command line. Thin: parse arguments, call one command's `main`, report.

Each command is a module of pipeline/commands/ (its arguments and its `main`); this module is the
program: the top parser, the list of commands, and the mapping of errors to exit codes.

Exit codes: 0 success; 1 an internal error (a bug: traceback shown); 2 a user error (bad mix
file, missing input, unwritable output: a one-line message, no traceback); 3 the run finished
but some input records were rejected (counted in the manifest, written under rejects/) or a
tagger failed on some documents (counted per source in the manifest's steps.tag);
4 `stats` found outputs that disagree with the manifest.
"""
from __future__ import annotations

import argparse
import os
import sys

from ..core.io import InputError
from .commands import (
    decode,
    dedup,
    index,
    mix_search,
    plan,
    report,
    run,
    show,
    stats,
    tag,
    tokenize,
    train_classifier,
    training,
)
from .commands.common import EXIT_OK, EXIT_USER

# The commands, in the order `dolma-prep --help` lists them: a new command is a module of
# pipeline/commands/ and one line here.
COMMANDS = (
    run,
    plan,
    tag,
    dedup,
    index,
    train_classifier,
    tokenize,
    decode,
    training,  # train, export-hf: the trainer's own command line, handed over by main before parsing
    stats,
    report,
    show,
    mix_search,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dolma-prep",
        description="Curate Dolma-style documents into OLMo-ready token arrays, on Ray.",
        epilog="Run `dolma-prep COMMAND --help` for the options of each command.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in training.NAMES:  # the trainer owns its arguments
        from dolma_prep.training.cli import main as training_main

        return training_main(argv)
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:  # `dolma-prep ... | head`: the reader left; say nothing more
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_OK
    except Exception as e:
        # a user error raised inside a Ray task arrives wrapped (a RayTaskError that is also an
        # instance of the original class, whose str() is the worker's traceback): show its own line
        cause = getattr(e, "cause", None)
        err = cause if isinstance(cause, InputError) else e
        if isinstance(err, InputError):
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USER
        raise
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
