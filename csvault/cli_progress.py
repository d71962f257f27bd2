"""Progress on stderr for ``csvault``: standard library only.

On a terminal one line is redrawn in place (``\\r``, cut to the terminal's width so it
never wraps); anywhere else (a pipe, a log file, CI) the same text goes out as plain
lines, one each time the work crosses a tenth, changes stage, or every few seconds, and
a last one at the end, so a log shows progress without thousands of carriage returns.
"""

from __future__ import annotations

import os
import sys
import time

#: Plain-line mode: a line at least this often while something moves.
PLAIN_EVERY = 5.0
#: Terminal mode: redraw at most this often.
REDRAW_EVERY = 0.1

_line_open = False


def end_line() -> None:
    """End a redrawn line, so that the next message starts on a line of its own."""
    global _line_open
    if _line_open:
        print(file=sys.stderr, flush=True)
        _line_open = False


def message(text: str) -> None:
    """One line on stderr (after a progress line, below it), in one write: a Ctrl-C
    between the text and its newline would glue the next message to it."""
    end_line()
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _columns() -> int:
    """The width of the terminal stderr is on (where the line is drawn), else 100."""
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        columns = 0
    return columns if columns > 0 else 100


def _redraw(text: str) -> None:
    global _line_open
    width = _columns() - 1
    print(f"\r{text[:width]:<{width}}", end="", file=sys.stderr, flush=True)
    _line_open = True


def size(count: float) -> str:
    """``512 B``, ``1.5 KiB``, ``19.1 MiB``, ``2.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _in_unit(count: float, total: float) -> str:
    """``count`` in the unit ``size(total)`` uses, without the unit: ``8.0`` of ``19.1 MiB``."""
    power = 0
    while total >= 1024 and power < 3:
        total, count, power = total / 1024, count / 1024, power + 1
    return f"{count:.0f}" if power == 0 else f"{count:.1f}"


def clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


class Line:
    """A progress line: redrawn on a terminal, plain lines elsewhere (see the module)."""

    def __init__(self, *, enabled: bool = True, tty: bool | None = None) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.shown_at = 0.0
        self.text = ""
        self.printed = ""
        self.stage: object = None
        self.tenth = -1

    def show(
        self,
        text: str,
        *,
        fraction: float | None = None,
        stage: object = None,
        force: bool = False,
        final: bool = False,
    ) -> bool:
        """Show ``text`` if it is due; True if it was shown. ``force`` redraws a terminal
        line now; ``final`` also prints a plain line now (the last state)."""
        self.text = text
        if not self.enabled:
            return False
        now = time.monotonic()
        shown = False
        if self.tty:
            if force or final or now - self.shown_at >= REDRAW_EVERY:
                _redraw(text)
                shown = True
        else:
            tenth = int(fraction * 10) if fraction is not None else self.tenth
            due = final or stage != self.stage or tenth > self.tenth
            if (due or now - self.shown_at >= PLAIN_EVERY) and text != self.printed:
                message(text)
                shown = True
            self.stage, self.tenth = stage, max(tenth, self.tenth)
        if shown:
            self.shown_at, self.printed = now, text
        return shown

    def close(self) -> None:
        """Show the last text (if it was not) and end the line."""
        if self.enabled and self.text and self.text != self.printed:
            self.show(self.text, final=True)
        if self.enabled and self.tty:
            end_line()


class Bar:
    """Bytes sent: ``data.csv [#####...] 41.9%  8.0 of 19.1 MiB  35.2 MiB/s  ETA 0:01``
    (on a terminal; the same without the bar in plain lines), ``done in 0:01`` at the end."""

    def __init__(self, label: str, total: int, start: int = 0, *, enabled: bool = True) -> None:
        self.label, self.total, self.start = label, total, start
        self.began = time.monotonic()
        self.done = start
        self.shown_done = -1
        self.line = Line(enabled=enabled)

    def _text(self) -> str:
        fraction = self.done / self.total if self.total else 1.0
        elapsed = max(time.monotonic() - self.began, 1e-6)
        speed = (self.done - self.start) / elapsed
        if self.done >= self.total:
            tail = f"done in {clock(elapsed)}"
        else:
            tail = f"ETA {clock((self.total - self.done) / speed)}" if speed > 0 else "ETA --:--"
        bar = ""
        if self.line.tty:
            filled = int(fraction * 24)
            bar = f" [{'#' * filled}{'.' * (24 - filled)}]"
        return (
            f"{self.label}{bar} {fraction * 100:5.1f}%  "
            f"{_in_unit(self.done, self.total)} of {size(self.total)}  "
            f"{size(speed)}/s  {tail}"
        )

    def update(self, done: int, force: bool = False, final: bool = False) -> None:
        self.done = done
        fraction = done / self.total if self.total else 1.0
        if self.line.show(self._text(), fraction=fraction, force=force, final=final):
            self.shown_done = done

    def note(self, text: str) -> None:
        """A line of its own (the bar goes on below it)."""
        message(text)

    def close(self) -> None:
        """The last state (once: not again if it was the last line shown), then a newline."""
        if self.line.tty or self.shown_done != self.done:
            self.update(self.done, final=True)
        self.line.text = self.line.printed
        self.line.close()
