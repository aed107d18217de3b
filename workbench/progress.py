"""Progress reporting and cancellation shared by every long computation.

Analyses accept ``progress=`` with one of:

* ``True`` (default): a ``tqdm.auto`` bar (a widget bar in Jupyter, text in a terminal);
* ``False`` / ``None``: silent;
* a callable ``fn(done, total, description)``: called after each step.  A panel uses this to drive its
  own progress bar; the callable may raise :class:`Cancelled` to stop the computation cleanly.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

from tqdm.auto import tqdm

ProgressLike = Union[bool, None, Callable[[int, int, str], None]]


class Cancelled(Exception):
    """Raised (by a progress callback) to stop a long computation."""


class Progress:
    """A small progress handle: ``with Progress(total, "svd", progress) as p: p.update()``."""

    def __init__(self, total: int, desc: str = "", progress: ProgressLike = True, leave: bool = False):
        self.total = int(total)
        self.desc = desc
        self.done = 0
        self._callback: Optional[Callable[[int, int, str], None]] = None
        self._bar = None
        if callable(progress):
            self._callback = progress
        elif progress:
            self._bar = tqdm(total=self.total, desc=desc, leave=leave)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        if self._callback is not None:
            self._callback(self.done, self.total, self.desc)

    def set_total(self, total: int) -> None:
        """Change the number of steps (e.g. once a refinement decides how many more it needs)."""
        self.total = int(total)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def set_description(self, desc: str) -> None:
        self.desc = desc
        if self._bar is not None:
            self._bar.set_description(desc)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        if self._callback is not None:
            self._callback(0, self.total, self.desc)
        return self

    def __exit__(self, *exc) -> None:
        self.close()
