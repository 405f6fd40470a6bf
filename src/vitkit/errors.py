"""The errors vitkit raises on purpose, and the helpers that word them. Every message says
what was wrong and what to do; the command line prints it as one line and exits 2."""

from __future__ import annotations

import os
import warnings


class CheckpointError(ValueError):
    """A checkpoint that can't be loaded into the model asked for; the message says why."""


class TrainingError(RuntimeError):
    """A run that had to stop; the message says why and what was kept."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (readers' messages run long), or its type's name."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def not_enough_memory(path: str | os.PathLike, what: str = "tensors",
                      remedy: str = "download or save it again") -> str:
    """The message for a file whose reading ran out of memory: what it claims, and what to do."""
    return (f"not enough memory to read {path}: it claims {what} larger than this machine can "
            f"hold, so it is damaged or too big for this machine; {remedy}")


def renamed_keyword(function: str, old: str, new: str, old_value: object, value: object
                    ) -> object:
    """`value`, or `old_value` with a DeprecationWarning when the caller used the old name."""
    if old_value is None:
        return value
    warnings.warn(f"{function}({old}=...) is deprecated; use {new}=", DeprecationWarning,
                  stacklevel=3)
    return old_value


class MissingExtra(ValueError):
    """An optional dependency that is not installed; the message names the extra to install
    (a ValueError, so the command line prints it as one line)."""


def require(module: str, extra: str, purpose: str):  # noqa: ANN201 - returns a module
    """Import `module` or raise MissingExtra naming the pip extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtra(f"{purpose} needs {module.split('.')[0]}, which is not installed: "
                           f"pip install 'vitkit[{extra}]'") from error
