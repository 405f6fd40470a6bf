"""`vitkit`: the entry point. Each subcommand lives in its own module with `register(sub)`."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
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


# A library argument in a message: `batch_size=12`, `precision='fp32'`, `resume=True`, `lr=`.
_ARGUMENT = re.compile(r"\b([a-z][a-z0-9_]*)=('[^']*'|\"[^\"]*\"|[^\s,;:)'\"]*)")


def as_flags(message: str, parser: argparse.ArgumentParser | None) -> str:
    """`message` with the library's argument names written as this command's flags
    (`batch_size=12` -> `--batch-size 12`, `resume=True` -> `--resume`, `ema=False` ->
    `--no-ema`); names the command has no flag for are left as they are."""
    if parser is None:
        return message
    options: dict[str, argparse.Action] = {}
    for action in parser._actions:  # the first flag of a dest is its own (--precision, --fp32)
        if action.option_strings:
            options.setdefault(action.dest, action)

    def flag(match: re.Match) -> str:
        action = options.get(match[1])
        if action is None:
            return match[0]
        value = match[2].strip("'\"")
        long = [o for o in action.option_strings if o.startswith("--") and
                not o.startswith("--no-")]
        name = long[0] if long else action.option_strings[0]
        if value in ("True", "False") and action.nargs == 0:
            if value == "True":
                return name
            negated = [o for o in action.option_strings if o.startswith("--no-")]
            return negated[0] if negated else f"no {name}"
        return f"{name} {value}" if value else name

    return _ARGUMENT.sub(flag, message)


class _FlagsInLog(logging.Filter):
    """vitkit's log lines with library argument names as the command's flags."""

    def __init__(self, parser: argparse.ArgumentParser | None) -> None:
        super().__init__()
        self.parser = parser

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = as_flags(record.getMessage(), self.parser), None
        return True


def _subparser(parser: argparse.ArgumentParser, command: str
               ) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command)
    return None


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
    command = _subparser(parser, args.command)
    flags_in_log = _FlagsInLog(command)
    logging.getLogger("vitkit").addFilter(flags_in_log)
    try:
        result = args.func(args)
    except KeyboardInterrupt:
        print("vitkit: interrupted", file=sys.stderr)
        return 130
    except (CommandError, TrainingError, ValueError, FileNotFoundError, NotADirectoryError,
            PermissionError) as e:
        if os.environ.get("VITKIT_DEBUG"):
            raise
        print(f"vitkit {args.command}: error: {as_flags(one_line(e), command)}",
              file=sys.stderr)
        return 2
    finally:
        logging.getLogger("vitkit").removeFilter(flags_in_log)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
