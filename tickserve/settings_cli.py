"""Typed settings read from a subcommand's flags (and TICKSERVE_* environment variables), one error policy."""

from __future__ import annotations

import sys
from typing import TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)


def parse_settings(settings_class: type[S], prog: str, argv: list[str] | None) -> S | None:
    """`settings_class` from `argv` (the process's arguments when None); None after printing what is invalid to
    stderr, in which case the command exits 2."""
    try:
        return settings_class(_cli_parse_args=sys.argv[1:] if argv is None else argv)
    except ValidationError as error:
        print(f"{prog}: invalid settings:\n{error}", file=sys.stderr)
        return None
