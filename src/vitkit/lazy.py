"""Names a package hands on but imports on first use (PEP 562), so that `import vitkit` and the
command line's `--help` and `models` start without importing torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(package: str, table: dict[str, str],
                    namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package`: `name` is imported from the submodule
    `table[name]` when first asked for, and kept in `namespace` (the package's globals())."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{table[name]}", package), name)
        namespace[name] = value
        return value

    return __getattr__
