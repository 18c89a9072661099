"""What every command line shares: flags made from a config dataclass, and one-line errors.

A config's fields are the flags (:func:`add_config_flags`; each field's metadata gives its help,
choices and range) and a config turns back into them (:func:`config_flags`), so a result records
the command that repeats it. A wrong flag, a missing or corrupt file, an absent dataset, a
diverging run: each is reported as ``error: <what is wrong and what to do>`` with exit status 2,
never as a traceback (those remain for real bugs).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, fields
from typing import Any, NoReturn

from .errors import UserError


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


def add_config_flags(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One flag per field of a config dataclass: ``batch_size`` is ``--batch-size``.

    The field's metadata gives the help and optionally ``choices``, ``check`` (a range) and ``const``
    (the value of the flag given alone); a bool is ``--x``/``--no-x``, a list takes one or more values.
    """
    hints = typing.get_type_hints(config_class)
    for f in fields(config_class):
        kind = hints[f.name]
        if isinstance(kind, types.UnionType):  # `int | None` -> int
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        default = f.default_factory() if f.default is MISSING else f.default
        help = f.metadata["help"].replace("%", "%%")  # argparse formats help with %
        if default is not None:  # a None default is described in the help itself
            shown = " ".join(map(str, default)) if isinstance(default, list) else "%(default)s"
            help += f" (default: {shown})"
        kw: dict[str, Any] = {"default": default, "help": help}
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            if typing.get_origin(kind) is list:  # list[int]: --sizes 224 32
                kind, kw["nargs"] = typing.get_args(kind)[0], "+"
            kw["type"] = checked(kind, f.metadata["check"]) if "check" in f.metadata else kind
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
            if "const" in f.metadata:
                kw.update(nargs="?", const=f.metadata["const"])
        parser.add_argument("--" + f.name.replace("_", "-"), **kw)


def config_flags(values: Mapping[str, Any]) -> list[str]:
    """The flags that set each field to its value (the parser's inverse); fields set to None are left out."""
    argv: list[str] = []
    for name, value in values.items():
        flag = name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(f"--{flag}" if value else f"--no-{flag}")
        elif isinstance(value, list):
            argv += [f"--{flag}", *map(str, value)]
        elif value is not None:
            argv += [f"--{flag}", str(value)]
    return argv


def command_line(module: str, argv: Sequence[str]) -> str:
    """``python -m module argv...``, quoted for a shell: the command a result records."""
    return shlex.join(["python", "-m", module, *argv])


def run_main(main: Callable[[list[str] | None], Any], user_errors: tuple[type[Exception], ...] = ()) -> Any:
    """Call a command's ``main``; turn a user's mistake (a :class:`~googlenet.errors.UserError`, or one
    of the command's own ``user_errors``) into one line on stderr and exit status 2. Anything else is
    a bug: it keeps its traceback."""
    try:
        return main(None)
    except (UserError, *user_errors) as e:
        fail(str(e))
