"""The `dolma-prep` commands, one module each (`pipeline/cli.py` lists them and runs the program).

A command module defines `NAME` and `HELP`, `add_parser(subparsers)` (its arguments, help and
description; it sets `fn=main`) and `main(args) -> int` (an exit code of `common`). It must be
cheap to import: cli.py imports every command to build the parser, even for `--help`, so a
command imports at the top only the standard library, `core.io` and `.common`; the rest of the
pipeline (mix files, stages, Ray, torch, taggers, dedup kinds) is imported inside `main`.
"""
