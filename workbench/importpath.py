"""Import paths ``package.module:attribute`` as the specs of models, data and losses name them."""
from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["resolve"]


def resolve(text: str) -> Any:
    """The object ``package.module:attr.sub`` names, with the current directory importable (the user's own
    modules, next to where they run).  ``ImportError`` and ``AttributeError`` propagate: each caller words
    them for its own argument."""
    module_name, attr = text.split(":", 1)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target
