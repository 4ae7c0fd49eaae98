"""One progress helper for every loop a user waits on (videos, frames, sequences, training epochs).

On a terminal it is a tqdm bar, with log records printed above it (``logging_redirect_tqdm``) so Hydra's log lines
stay whole. Elsewhere (a Slurm log, a pipe, CI) it writes a log line every ``every_s`` seconds and one at the end:
``detect: 120/480 video (25%), 3.2 video/s, 1m52s left``, so a shard's log shows how far it is.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds between two progress log lines when there is no terminal.
EVERY_S = 30.0


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Iterate over ``iterable`` reporting progress; see the module docstring.

    Args:
        iterable: what to iterate over.
        desc: what is progressing (the log lines' prefix).
        total: the number of items (default: ``len(iterable)`` when it has one).
        unit: the item's name (``video``, ``frame``, ``seq``, ``epoch``).
        enabled: False for silence (e.g. a library call that a caller times itself).
        bar: a tqdm bar (True), log lines (False), or a bar exactly when stderr is a terminal (None).
        every_s: seconds between log lines when there is no bar.
        logger: where log lines go (default: this module's logger).
    """

    def __init__(self, iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it",
                 enabled: bool = True, bar: bool | None = None, every_s: float = EVERY_S,
                 logger: logging.Logger | None = None) -> None:
        self.iterable = iterable
        self.desc = desc
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.unit = unit
        self.enabled = enabled
        self.use_bar = enabled and (sys.stderr.isatty() if bar is None else bar)
        self.every_s = every_s
        self.log = logger or log
        self.postfix: dict[str, Any] = {}
        self._bar: tqdm | None = None
        self.n = 0

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the count (the bar's postfix, or the end of the log line)."""
        self.postfix = values
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def line(self, elapsed: float, final: bool = False) -> str:
        """The log line after ``elapsed`` seconds."""
        rate = self.n / elapsed if elapsed > 0 else 0.0
        count = f"{self.n}/{self.total} {self.unit}" if self.total else f"{self.n} {self.unit}"
        if self.total:
            count += f" ({100.0 * self.n / self.total:.0f}%)"
        parts = [f"{self.desc}: {count}", f"{rate:.3g} {self.unit}/s"]
        if final:
            parts.append(f"done in {_duration(elapsed)}")
        elif self.total and rate > 0:
            parts.append(f"{_duration((self.total - self.n) / rate)} left")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        return ", ".join(parts)

    def __iter__(self) -> Iterator[T]:
        if not self.enabled:
            yield from self.iterable
            return
        if self.use_bar:
            with logging_redirect_tqdm(), tqdm(self.iterable, desc=self.desc, total=self.total, unit=self.unit,
                                               dynamic_ncols=True) as bar:
                self._bar = bar
                for item in bar:
                    yield item
                    self.n += 1
            self._bar = None
            return
        start = last = time.perf_counter()
        for item in self.iterable:
            yield item
            self.n += 1
            now = time.perf_counter()
            if now - last >= self.every_s:
                self.log.info("%s", self.line(now - start))
                last = now
        if self.n and time.perf_counter() - start >= self.every_s:
            self.log.info("%s", self.line(time.perf_counter() - start, final=True))


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None, unit: str = "it", **kwargs: Any
             ) -> Progress:
    """A :class:`Progress` over ``iterable`` (the one progress helper of the project)."""
    return Progress(iterable, desc=desc, total=total, unit=unit, **kwargs)
