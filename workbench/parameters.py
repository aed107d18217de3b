"""Typed notebook parameters: every line of a curated notebook's ``parameters`` cell declares its kind.

A parameter line reads ``name = default  # [declaration] help text``.  The declaration, in brackets at the
start of the help comment, is one of

* a kind: ``int``, ``float``, ``bool``, ``str``, ``model``, ``data``, ``graph`` (specs, see
  :func:`workbench.models.load`, :func:`workbench.data.load`, :func:`workbench.topology.load_graph`) or
  ``file`` (a path that must exist);
* with a range: ``int >= 0``, ``float > 0``, ``float in [0, 1)``, ``int in [1, 6]``, ``odd int >= 3``;
* a list: ``list of int``, ``list of float in (0, 1]``;
* a choice: ``one of auto | cpu | cuda``;
* any of these followed by ``or None``.

:func:`check` tests a value against its declaration and raises a ``ValueError`` naming the parameter, what
it expects and what it got, so the command line refuses a bad value before any kernel starts.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
import re
from pathlib import Path
from typing import Any, List, Optional, Tuple

__all__ = ["Declaration", "parse", "check", "resolve_path", "SPEC_KINDS"]

KINDS = ("int", "float", "bool", "str", "model", "data", "graph", "file")
SPEC_KINDS = ("model", "data", "graph", "file")
_RANGE = re.compile(r"^(>=|>|<=|<)\s*(-?[\d.eE+-]+)$")
_INTERVAL = re.compile(r"^in\s*([\[(])\s*(-?[\d.eE+-]+)\s*,\s*(-?[\d.eE+-]+)\s*([\])])$")


@dataclasses.dataclass
class Declaration:
    """What a parameter accepts (see the module docstring)."""

    kind: str
    nullable: bool = False
    is_list: bool = False
    odd: bool = False
    choices: Optional[Tuple[str, ...]] = None
    low: Optional[Tuple[float, bool]] = None  # (bound, inclusive)
    high: Optional[Tuple[float, bool]] = None
    text: str = ""

    def describe(self) -> str:
        return self.text


def parse(text: str) -> Declaration:
    """The declaration in ``text`` (the part between the brackets)."""
    original = text.strip()
    body = original
    nullable = body.endswith(" or None")
    if nullable:
        body = body[: -len(" or None")].strip()
    if body.startswith("one of "):
        choices = tuple(c.strip() for c in body[len("one of "):].split("|"))
        return Declaration("str", nullable=nullable, choices=choices, text=original)
    is_list = body.startswith("list of ")
    if is_list:
        body = body[len("list of "):].strip()
    odd = body.startswith("odd ")
    if odd:
        body = body[len("odd "):].strip()
    kind, _, constraint = body.partition(" ")
    if kind not in KINDS:
        raise ValueError(f"unknown parameter kind {kind!r} in [{original}]; use one of {KINDS}")
    decl = Declaration(kind, nullable=nullable, is_list=is_list, odd=odd, text=original)
    constraint = constraint.strip()
    if constraint:
        m, i = _RANGE.match(constraint), _INTERVAL.match(constraint)
        if m:
            op, value = m.group(1), float(m.group(2))
            if op.startswith(">"):
                decl.low = (value, op == ">=")
            else:
                decl.high = (value, op == "<=")
        elif i:
            decl.low = (float(i.group(2)), i.group(1) == "[")
            decl.high = (float(i.group(3)), i.group(4) == "]")
        else:
            raise ValueError(f"cannot read the range {constraint!r} in [{original}]")
    return decl


def split_help(comment: str) -> Tuple[Optional[Declaration], str]:
    """``(declaration or None, help text)`` of a parameter's ``# [declaration] help`` comment."""
    comment = comment.strip()
    if comment.startswith("["):
        end = comment.find("] ")
        if end < 0 and comment.endswith("]"):
            end = len(comment) - 1
        if end > 0:
            return parse(comment[1:end]), comment[end + 1:].strip()
    return None, comment


def _number_ok(value: Any, decl: Declaration) -> bool:
    if decl.kind == "int" and not (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
        return False
    if decl.kind == "float" and not (isinstance(value, numbers.Real) and not isinstance(value, bool)):
        return False
    if not math.isfinite(float(value)):
        return False
    if decl.low is not None and (value < decl.low[0] or (value == decl.low[0] and not decl.low[1])):
        return False
    if decl.high is not None and (value > decl.high[0] or (value == decl.high[0] and not decl.high[1])):
        return False
    return not (decl.odd and int(value) % 2 == 0)


def _spec_ok(value: Any, decl: Declaration) -> Optional[str]:
    """``None`` when a spec value can be used, else why not."""
    if not isinstance(value, str) or not value.strip():
        return "a non-empty string"
    path = Path(value).expanduser()
    looks_like_path = os.sep in value or "/" in value or bool(path.suffix) or decl.kind == "file"
    if looks_like_path and ":" not in value.split("/")[-1] and not path.exists():
        return f"an existing file or folder (no {value!r} in {os.getcwd()})"
    return None


def _scalar_problem(value: Any, decl: Declaration) -> Optional[str]:
    if decl.choices is not None:
        return None if value in decl.choices else f"one of {' | '.join(decl.choices)}"
    if decl.kind in ("int", "float"):
        return None if _number_ok(value, decl) else decl.text.replace(" or None", "")
    if decl.kind == "bool":
        return None if isinstance(value, bool) else "true or false"
    if decl.kind == "str":
        return None if isinstance(value, str) else "a string"
    return _spec_ok(value, decl)


def check(name: str, value: Any, decl: Optional[Declaration], *, notebook: str = "") -> None:
    """Raise ``ValueError`` naming the parameter when ``value`` does not satisfy ``decl``."""
    if decl is None or (value is None and decl.nullable):
        return
    where = f"notebook {notebook!r}: " if notebook else ""
    if value is None:
        raise ValueError(f"{where}parameter {name} must be {decl.text}, got None")
    items: List[Any] = value if decl.is_list else [value]
    if decl.is_list and (not isinstance(value, (list, tuple)) or not value):
        raise ValueError(f"{where}parameter {name} must be a non-empty {decl.text}, got {value!r}")
    for item in items:
        problem = _scalar_problem(item, decl)
        if problem is not None:
            got = f"{item!r} ({type(item).__name__})"
            raise ValueError(f"{where}parameter {name} must be {problem}, got {got}"
                             + (f" in {value!r}" if decl.is_list else ""))


def resolve_path(value: Any, decl: Optional[Declaration]) -> Any:
    """A relative path of a spec parameter made absolute (notebooks run in another folder than the caller)."""
    if decl is None or decl.kind not in SPEC_KINDS or not isinstance(value, str):
        return value
    path = Path(value).expanduser()
    if not path.is_absolute() and path.exists():
        return str(path.resolve())
    return value
