"""Progress of long operations (learn, gate, report, benchmarks), drawn on a terminal only.

One context manager, `progress`, shows a transient bar (rich) on standard error while a loop
runs and hands the loop a function to call once per item done. It draws nothing, and imports
nothing, unless standard error is a terminal: piped output, CI logs and tests see no bar. A
command whose output a script reads (``--json``) turns bars off for its duration with
`quiet`, so even on a terminal nothing but the JSON is written.

Bars are transient (erased when their loop ends), so a terminal after the command shows the
command's output alone. The library calls `progress` where it loops; it never needs to know
whether anyone is watching.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Iterator, Sequence
from typing import Protocol, TypeVar

_T = TypeVar("_T")

__all__ = ["Step", "progress", "quiet", "shown", "track"]

#: False inside `quiet`; otherwise None (bars follow the terminal).
_ENABLED: contextvars.ContextVar[bool | None] = contextvars.ContextVar(
    "skillbank_progress", default=None
)


def shown() -> bool:
    """True when a bar would be drawn now: not in `quiet`, and standard error is a terminal."""
    if _ENABLED.get() is False:
        return False
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No progress bars inside the ``with`` block (for ``--json`` and other scripted output)."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


class Step(Protocol):
    """What `progress` yields: call it with how many items were done (default one)."""

    def __call__(self, advance: int = 1) -> None: ...


def _ignore(advance: int = 1) -> None:
    del advance


@contextlib.contextmanager
def progress(label: str, total: int | None) -> Iterator[Step]:
    """A bar labelled ``label`` on a terminal; yields ``step(n=1)``, called per item done.

    Args:
        label: What is being done, e.g. ``"learning"``.
        total: How many items, or None when unknown (a spinner with a count).

    Example:
        >>> with progress("checking", total=len(skills)) as step:  # doctest: +SKIP
        ...     for skill in skills:
        ...         check(skill)
        ...         step()
    """
    if not shown() or (total is not None and total <= 1):  # nothing worth a bar
        yield _ignore
        return
    from rich.console import Console  # imported only when a bar is drawn (startup time)
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn() if total is not None else TextColumn("{task.completed}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)

        def step(advance: int = 1) -> None:
            bar.advance(task, advance)

        yield step


def track(items: Sequence[_T], label: str) -> Iterator[_T]:
    """Each of ``items`` in turn, with a `progress` bar that advances as each one is done."""
    with progress(label, total=len(items)) as step:
        for item in items:
            yield item
            step()
