"""How every tickserve command reads its settings, and the settings several components share.

Settings are pydantic-settings classes whose fields each carry a description (it becomes the `--help` text).
Every field can be set as `TICKSERVE_<NAME>` in the environment (how the chart configures pods) or as a
`--<name>` flag (local runs, tests); a flag wins over the environment. `parse_settings` is the one parser: it
also takes a parent argparse parser, so that the KServe servers keep all of KServe's own flags.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Literal, NoReturn, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, CliSettingsSource, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)

Track = Literal["stable", "canary"]
"""A rollout track: the `track` label of every serving metric and the track recorded with each prediction."""


class TickserveSettings(BaseSettings):
    """Base of every component's settings: the `TICKSERVE_` environment prefix; unknown variables are ignored
    because one pod environment carries the settings of several components."""

    model_config = SettingsConfigDict(env_prefix="TICKSERVE_", extra="ignore")


class RedisSettings(TickserveSettings):
    """The Redis that holds hot features, prices, the prediction cache and stream: one URL and one timeout policy
    for ingest, the transformer and the monitor."""

    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis holding hot features, cache and stream")
    redis_timeout_seconds: float = Field(
        1.0, gt=0, description="socket timeout of one Redis round trip (a blocking read adds its own wait)"
    )


def parse_settings(
    settings_class: type[S],
    prog: str,
    argv: list[str] | None,
    *,
    parent: argparse.ArgumentParser | None = None,
    description: str | None = None,
    defaults: dict[str, object] | None = None,
) -> tuple[S, argparse.Namespace]:
    """`settings_class` read from the environment and `argv` (the process's arguments when None), plus the
    parsed arguments of `parent` (e.g. KServe's parser), whose `defaults` may be overridden.

    Invalid settings exit with status 2 and a message naming each bad field, as argparse does for bad flags.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description, parents=[parent] if parent is not None else [])
    if defaults:
        parser.set_defaults(**defaults)
    flags = CliSettingsSource(settings_class, root_parser=parser)
    args = parser.parse_args(argv)
    try:
        return settings_class(_cli_settings_source=flags(parsed_args=args)), args
    except ValidationError as error:
        parser.exit(2, f"{prog}: invalid settings:\n{error}\n")


def usage_error(prog: str, message: str) -> NoReturn:
    """Exit 2 with `message`, the way argparse reports a bad flag (for checks that span several settings)."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def read_secret(value: SecretStr | None, file: Path | None) -> str | None:
    """A secret given in the environment (`value`) or as a file (`file`, e.g. a mounted Secret); None if neither.
    Secrets never come from a settings file, so a checked-in config cannot leak one."""
    if value is not None:
        return value.get_secret_value()
    if file is not None:
        return file.read_text().strip()
    return None
