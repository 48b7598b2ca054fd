"""The run's logger: everything to <run>/histo.log, INFO and above to the terminal."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

LOGGER = "histo"


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
        console = RichHandler(console=Console(stderr=True), show_path=False, markup=False)
        console.setLevel(logging.INFO)
        handlers.append(console)
    for handler in handlers:
        logger.addHandler(handler)
    return logger, handlers


def close_run_log(logger: logging.Logger, handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        logger.removeHandler(handler)
        handler.close()
