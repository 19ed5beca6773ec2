"""Progress of long data work (decoding, feature extraction, reading shards): count, rate, ETA.

A 200,000-image dataset takes minutes to decode on two cores; without a sign of life it looks
hung. :class:`Progress` reports ``done/total``, items per second and the time left:

- on a terminal, one line rewritten in place at most every :data:`REFRESH_S` seconds;
- otherwise (a log file, CI, a notebook's captured stream), a log line every :data:`LOG_EVERY_S`
  seconds, so the log shows the rate without thousands of lines.

Work of fewer than :data:`MIN_ITEMS` items is quiet (it ends before anyone waits), except for
the closing summary at ``logging.DEBUG``. It is thread-safe: decoding threads call :meth:`add`.

Example:
    >>> bar = Progress("decoding", 3, "images", stream=None)
    >>> for _ in range(3):
    ...     bar.add(1)
    >>> bar.line(elapsed=2.0)
    'decoding: 3/3 images (100%), 1.5 images/s, 0:02 elapsed'
"""

from __future__ import annotations

import logging
import sys
import threading
import time

log = logging.getLogger(__name__)

MIN_ITEMS = 5000
REFRESH_S = 0.5
LOG_EVERY_S = 30.0


def clock(seconds: float) -> str:
    """``H:MM:SS`` (or ``M:SS`` under an hour)."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


_STDERR = object()  # Progress's default stream: sys.stderr, looked up when a bar is made


class Progress:
    """``done/total`` of one piece of data work; see the module docstring.

    Args:
        what: What is being done ("decoding", "features").
        total: Items to do (0 when not known in advance: no percentage or ETA then).
        unit: What an item is ("images").
        stream: Where a terminal's line goes; None writes log lines only. By default the
            ``sys.stderr`` of the moment the bar is made, not of the import: a notebook or a
            test harness may have replaced (and closed) the one that was there at import.
    """

    def __init__(self, what: str, total: int, unit: str = "images", stream=_STDERR):
        self.what, self.total, self.unit = what, int(total), unit
        self.count = 0
        self.start = self.shown = time.monotonic()
        self.stream = stream = sys.stderr if stream is _STDERR else stream
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self.quiet = 0 < self.total < MIN_ITEMS  # total 0: not known in advance
        self._lock = threading.Lock()

    def line(self, elapsed: float | None = None) -> str:
        """The current state as one line."""
        elapsed = time.monotonic() - self.start if elapsed is None else elapsed
        rate = self.count / max(elapsed, 1e-9)
        if self.total <= 0:
            return (
                f"{self.what}: {self.count:,} {self.unit}, {rate:,.1f} {self.unit}/s, "
                f"{clock(elapsed)} elapsed"
            )
        text = (
            f"{self.what}: {self.count:,}/{self.total:,} {self.unit} "
            f"({100 * self.count / max(self.total, 1):.0f}%), {rate:,.1f} {self.unit}/s"
        )
        if self.count < self.total and self.count:
            return text + f", ETA {clock((self.total - self.count) / rate)}"
        return text + f", {clock(elapsed)} elapsed"

    def add(self, n: int) -> None:
        """Counts ``n`` more items done; shows the state when it is time to."""
        with self._lock:
            self.count += n
            if self.quiet:
                return
            now = time.monotonic()
            if self.tty and now - self.shown >= REFRESH_S:
                self.stream.write("\r" + self.line() + "\033[K")
                self.stream.flush()
                self.shown = now
            elif not self.tty and now - self.shown >= LOG_EVERY_S:
                log.info("%s", self.line())
                self.shown = now

    def done(self) -> None:
        """Ends the line and logs the summary (rate and elapsed time)."""
        if self.tty and not self.quiet:
            self.stream.write("\r\033[K")
            self.stream.flush()
        log.log(logging.DEBUG if self.quiet else logging.INFO, "%s", self.line())
