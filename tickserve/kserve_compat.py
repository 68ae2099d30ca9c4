"""Every adjustment tickserve makes to KServe's module-level state, in one place, with the reason for each.

Written against kserve 0.21.0 (`KSERVE_VERSION`, the version `pyproject.toml` pins). KServe keeps its server
set-up in globals of `kserve.model_server`: the FastAPI `app`, the argument `parser` and the `args` it parsed
from `sys.argv` at import time, and the import string uvicorn serves. tickserve's servers are KServe
ModelServers, so they adjust those globals rather than fork the server. `tests/test_kserve_compat.py` fails
when the installed KServe differs from `KSERVE_VERSION`: an upgrade re-reads every item here first.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

KSERVE_VERSION = "0.21.0"


def kserve_parser() -> argparse.ArgumentParser:
    """KServe's own argument parser, to be used as a parent parser so that every KServe flag (--http_port,
    --workers, --predictor_host ...) keeps working on tickserve's commands. Importing `kserve.model_server`
    parses `sys.argv` (known arguments only), hence the late import."""
    from kserve import model_server

    return model_server.parser


def adopt_arguments(args: argparse.Namespace) -> None:
    """Make KServe's import-time `model_server.args` the ones tickserve parsed: ModelServer.start() and its REST
    worker processes read some options (log config, workers ...) from there rather than from their arguments."""
    from kserve import model_server

    vars(model_server.args).update(vars(args))


def kserve_app() -> FastAPI:
    """KServe's module-level FastAPI app: REST worker processes (--workers > 1) import it afresh, so routes and
    handlers added to it at import time reach every process."""
    from kserve import model_server

    return model_server.app


def add_exception_handler(error: type[Exception], handler: Callable[..., Any]) -> None:
    """Map an error class to its response on KServe's app; KServe answers unknown errors with a 500."""
    kserve_app().add_exception_handler(error, handler)


def add_route(path: str, endpoint: Callable[..., Any], methods: list[str]) -> None:
    """A route on KServe's app that wins over KServe's own route for the same path: routes added before the
    server starts come before the ones KServe adds in start()."""
    kserve_app().add_api_route(path, endpoint, methods=methods)


def on_startup(hook: Callable[[], Any]) -> None:
    """Run `hook` when each REST process starts (worker processes load their models there)."""
    kserve_app().router.on_startup.append(hook)


def on_shutdown(hook: Callable[[], Any]) -> None:
    """Run `hook` when the REST server shuts down (close connections the server owns)."""
    kserve_app().router.on_shutdown.append(hook)


def serve_app(import_string: str) -> None:
    """Make KServe's ModelServer serve the ASGI app at `import_string` ("module:attribute") instead of its FastAPI
    app. KServe hands uvicorn an import string (worker processes import it afresh), read from this module
    constant when the server starts; KServe still sets up its FastAPI app, which the wrapper calls."""
    from kserve import model_server

    model_server.FASTAPI_APP_IMPORT_STRING = import_string


def use_uvloop(*, required: bool) -> None:
    """With one worker KServe serves REST inside its own asyncio.run(), whatever --event_loop says (uvicorn picks
    uvloop only for the worker processes it starts): make that run use uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        if required:
            raise
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # KServe's setup_event_loop() calls get_event_loop() before asyncio.run(), which uvloop >= 0.22 refuses
    # without a current loop (asyncio itself would quietly make one, as this does).
    asyncio.set_event_loop(asyncio.new_event_loop())
