"""What every command line shares: one line on stderr and exit code 2 for a user's mistake.

A wrong flag, a missing or corrupt file, an absent dataset, a diverging run: each is reported as
``error: <what is wrong and what to do>``, never as a traceback (those remain for real bugs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from .checkpoint import CheckpointError
from .data import DatasetNotFoundError

USER_ERRORS = (FileNotFoundError, CheckpointError, DatasetNotFoundError, ValueError)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, like every other error of the commands."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")


def fail(message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def checked(kind: type, check: tuple[Callable[[Any], bool], str]) -> Callable[[str], Any]:
    """An argparse type: parse ``kind``, refuse values that fail ``check`` = (test, range in words)."""
    ok, expected = check

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            article = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {article}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"{text} is not {expected}")
        return value
    return parse


def run_main(main: Callable[[list[str] | None], Any], user_errors: tuple[type[Exception], ...] = ()) -> Any:
    """Call a command's ``main``; turn a user's mistake (:data:`USER_ERRORS`, ``user_errors``) into
    one line on stderr and exit status 2."""
    try:
        return main(None)
    except (*USER_ERRORS, *user_errors) as e:
        fail(str(e))
