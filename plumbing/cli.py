"""The command-line style of simgen, realdiff and policies, written once.

- `Parser`: argparse whose usage mistakes are one line on stderr and exit code 2.
- `option`: a flag whose default and help come from a config dataclass's field or a function's
  parameter (stated once there).
- `quiet`: the `--quiet` flag every long-running command has (no progress bar).
- `run`: calls the chosen command; a user's mistake (ValueError, OSError) is one line
  `PROG: error: ...` and exit code 2, a run whose worker failed midway (procs.WorkerFailed) one
  line and exit code 1, Ctrl-C exit code 130. Nothing else is caught: a bug keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import sys
from collections.abc import Callable

from plumbing.procs import WorkerFailed


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr (then exit 2), not a usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def field_default(cls, name: str):
    """The default of dataclass `cls`'s field `name` (MISSING if it has none)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def option(
    parser: argparse.ArgumentParser, source, name: str, help: str, flag: str | None = None, **kw
) -> None:
    """Add `--name` (or `flag`) for `name`, a field of config dataclass `source` or a parameter of
    function `source`, stated once there: the flag's type is the default's and its help ends with
    that default. For a dataclass the parsed value is None unless the flag is given, so the
    config's own default applies (see `given`); for a function it is the parameter's default."""
    if dataclasses.is_dataclass(source):
        default, parsed_default = field_default(source, name), None
    else:
        default = parsed_default = inspect.signature(source).parameters[name].default
    if isinstance(default, bool):
        shown = "on" if default else "off"
    elif isinstance(default, tuple):
        shown = ",".join(map(str, default))
    else:
        shown = "none" if default is None else default
    if isinstance(default, bool) and "action" not in kw:
        kw["action"] = argparse.BooleanOptionalAction
    elif "type" not in kw and "action" not in kw and default not in (None, dataclasses.MISSING):
        kw["type"] = type(default)
    parser.add_argument(
        flag or "--" + name.replace("_", "-"),
        dest=name,
        default=parsed_default,
        help=f"{help} (default {shown})",
        **kw,
    )


def given(args: argparse.Namespace, cls) -> dict:
    """{field: value} for the fields of `cls` that were given on the command line."""
    return {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(cls)
        if getattr(args, f.name, None) is not None
    }


def quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse argv, call the chosen command's `func(args)` and turn errors into one line and an
    exit code (see the module docstring). Returns the exit code."""
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        return args.func(args) or 0
    except (ValueError, OSError) as e:  # StoreError, JobError: ValueErrors
        if isinstance(e, BrokenPipeError):  # output piped into `head` and the like
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except WorkerFailed as e:  # what was finished is kept
        print(f"{prog}: error: {e}; re-run the same command to resume", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


def main_of(build_parser: Callable[[], argparse.ArgumentParser]) -> Callable[[list[str] | None], int]:
    """The `main(argv=None) -> exit code` of a command-line program built by `build_parser`."""

    def main(argv: list[str] | None = None) -> int:
        return run(build_parser(), argv)

    return main
