"""Progress reporting and cancellation shared by every long computation.

Analyses accept ``progress=`` with one of:

* ``True`` (default): a ``tqdm.auto`` bar (a widget bar in Jupyter, text in a terminal);
* ``False`` / ``None``: silent;
* a callable ``fn(done, total, description)``: called after each step.  A panel uses this to drive its
  own progress bar; the callable may raise :class:`Cancelled` to stop the computation cleanly.

An analysis made of several stages reports one overall progress: :meth:`Progress.stage` hands a
sub-computation a ``progress`` argument of its own whose steps fill one step of the parent, so the
caller sees ``done / total`` rise smoothly across stages and a description naming the current stage.
That description is a :class:`Label`: a plain string that also carries, per stage level, the stage's
name and the sub-computation's own ``done`` of ``total`` (what a panel shows as "Hessian eigenvalues:
step 2 of 60").
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

from tqdm.auto import tqdm

ProgressLike = Union[bool, None, Callable[[int, int, str], None]]


class Cancelled(Exception):
    """Raised (by a progress callback) to stop a long computation."""


class Label(str):
    """A progress description that keeps its parts.

    The string is what a bar shows (``"Hessian eigenvalues: hessian lanczos"``); ``levels`` holds one
    ``(stage name, done, total)`` per stage, outermost first, where ``done`` of ``total`` counts the steps
    of the computation running inside that stage (in its own units, not the caller's).
    """

    levels: Tuple[Tuple[str, float, float], ...] = ()

    def __new__(cls, text: str, levels: Tuple[Tuple[str, float, float], ...] = ()) -> "Label":
        label = super().__new__(cls, text)
        label.levels = tuple(levels)
        return label


def stage_label(name: str, done: float, total: float, desc: str = "") -> Label:
    """The description a stage named ``name`` reports while its sub-computation is at ``done`` of ``total``
    and describes itself as ``desc`` (which may be a :class:`Label` of deeper stages)."""
    text = f"{name}: {desc}" if desc and desc != name else name
    return Label(text, ((name, done, total),) + tuple(getattr(desc, "levels", ())))


class Progress:
    """A small progress handle: ``with Progress(total, "svd", progress) as p: p.update()``.

    ``done`` may be fractional while a stage (:meth:`stage`) is under way.
    """

    def __init__(self, total: int, desc: str = "", progress: ProgressLike = True, leave: bool = False):
        self.total = int(total)
        self.desc = desc
        self.done: float = 0
        self._reported: float = 0  # the furthest point reported, stages included
        self._callback: Optional[Callable[[int, int, str], None]] = None
        self._bar = None
        if callable(progress):
            self._callback = progress
        elif progress:
            self._bar = tqdm(total=self.total, desc=desc, leave=leave)

    def _report(self, done: float, desc: str) -> None:
        self._reported = max(self._reported, done)
        if self._bar is not None:
            self._bar.n = done
            self._bar.set_description(desc, refresh=False)
            self._bar.refresh()
        if self._callback is not None:
            self._callback(done, self.total, desc)

    def update(self, n: float = 1) -> None:
        staged = self._reported > self.done  # a stage reported fractions past the last whole step
        self.done = max(self.done + n, self._reported)
        if self._bar is not None and self._callback is None and not staged:
            self._bar.update(n)  # tqdm rate-limits its redraws
            self._reported = self.done
            return
        self._report(self.done, self.desc)

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

    def stage(self, name: str, steps: float = 1) -> Callable[[float, float, str], None]:
        """A ``progress`` callable for a sub-computation that counts as ``steps`` of this handle.

        The sub-computation's own ``done / total`` fills those steps; descriptions read
        ``"<name>: <its description>"`` (a :class:`Label` that also keeps ``name`` and the
        sub-computation's own step count).  When it finishes, call :meth:`update` with ``steps`` (or let the
        next stage start from where this one ended: the handle never goes backwards).  A cancelling
        callback raises through the sub-computation as usual.
        """
        start = max(self.done, self._reported)

        def report(done: float, total: float, desc: str = "") -> None:
            frac = min(1.0, max(0.0, done / total)) if total else 0.0
            self._report(start + steps * frac, stage_label(name, done, total, desc))

        report.__name__ = f"stage_{name}"
        return report

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        if self._callback is not None:
            self._callback(0, self.total, self.desc)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        # finished: the bar ends full even when the work needed fewer steps than announced (a search that
        # converged early); a callback that cancels here still stops the caller
        try:
            if exc_type is None and max(self.done, self._reported) < self.total:
                self.done = self.total
                self._report(self.total, self.desc)
        finally:
            self.close()


def quiet(progress: ProgressLike) -> ProgressLike:
    """``progress`` for a sub-computation of a step that already reports: a callable is passed through
    (so cancellation still reaches it), a bar request becomes silent."""
    return progress if callable(progress) else False
