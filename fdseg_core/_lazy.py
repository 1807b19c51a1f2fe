"""Lazy package attributes (PEP 562): a package names its public API without importing it.

This module imports nothing from fdseg; the packages whose import must stay cheap
(``fdseg_core``, ``fdseg_core.train``) use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose names live in submodules.

    Args:
        package: The package's name (for error messages).
        exports: Public name -> the module that defines it.
        namespace: The package's ``globals()``; a name is cached there on first access.

    Returns:
        ``(__getattr__, __dir__)`` to assign at the package's top level.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace.get("__all__", ())) | set(exports))

    return __getattr__, __dir__
