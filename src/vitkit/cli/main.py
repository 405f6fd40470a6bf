"""`vitkit`: the entry point. Each subcommand lives in its own module with `register(sub)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from vitkit.errors import TrainingError

# Subcommand modules, in the order `vitkit --help` lists them.
COMMANDS = [
    "models", "info", "train", "finetune", "demo", "analyze", "eval", "predict", "bench", "convert",
    "pretrain", "experiment", "shards", "export", "serve",
]


class CommandError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitkit",
        description="Vision Transformers (Dosovitskiy et al., 2021): models, weights, training, "
        "analysis.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"vitkit.cli.{name}").register(sub)
    return parser


def _version() -> str:
    from vitkit import __version__

    return f"vitkit {__version__}"


def one_line(error: BaseException) -> str:
    """The error's message on one line: an indented list of details joined with '; '."""
    message = ""
    for part in (line.strip() for line in str(error).splitlines()):
        if part:
            message += part if not message else (" " if message.endswith(":") else "; ") + part
    return message or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    # vitkit's own notes at INFO; other libraries (httpx, huggingface_hub) at WARNING only.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("vitkit").setLevel(logging.INFO)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("vitkit: interrupted", file=sys.stderr)
        return 130
    except (CommandError, TrainingError, ValueError, FileNotFoundError, NotADirectoryError,
            PermissionError) as e:
        if os.environ.get("VITKIT_DEBUG"):
            raise
        print(f"vitkit {args.command}: error: {one_line(e)}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
