"""The run's logger: everything to <run>/histo.log, INFO and above to the terminal.

On a terminal, rich formats the lines (colours, wrapped to the window). When stderr is piped or
redirected (`histo run ... > log 2>&1`) there is no window to fit: rich would wrap at 80 columns and
pad every line, breaking paths mid-way, so plain one-line records are written instead.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.logging import RichHandler

LOGGER = "histo"
PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(message)s"


def terminal_handler(stream: TextIO | None = None) -> logging.Handler:
    """Rich on a terminal; one unwrapped, unpadded line per record when `stream` is not a TTY."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if callable(isatty) and isatty():
        return RichHandler(console=Console(file=stream), show_path=False, markup=False)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(PLAIN_FORMAT, datefmt="%H:%M:%S"))
    return handler


class _RunLogFile(logging.FileHandler):
    """A full or read-only disk must not print a logging traceback per line; the run's own writes
    meet the same error and report it once, with the fix."""

    _failed = False

    def handleError(self, record: logging.LogRecord) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            if not self._failed:
                self._failed = True
                print(f"note: {self.baseFilename} cannot be written: {sys.exc_info()[1]}", file=sys.stderr)
            return
        super().handleError(record)


def open_run_log(path: Path, *, quiet: bool = False) -> tuple[logging.Logger, list[logging.Handler]]:
    logger = logging.getLogger(LOGGER)
    logger.setLevel(logging.DEBUG)
    file_handler = _RunLogFile(path, encoding="utf-8")
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [file_handler]
    if not quiet:
        console = terminal_handler()
        console.setLevel(logging.INFO)
        handlers.append(console)
    for handler in handlers:
        logger.addHandler(handler)
    return logger, handlers


def close_run_log(logger: logging.Logger, handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        logger.removeHandler(handler)
        handler.close()
