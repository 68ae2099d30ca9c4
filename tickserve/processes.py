"""Local server processes: start a child, wait until it answers, stop it cleanly.

Used by `tickserve demo` to run redis-server and the KServe servers on one machine, and by the tests and
benchmarks to talk to real servers. Children run from a scratch directory so that a source checkout (whose
`transformers/` folder would shadow Hugging Face `transformers`) is never on their `sys.path`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


class ServerProcess:
    """A child process that is ready when `ready_url` answers 200 (or `tcp_port` accepts connections).

    Output goes to a log file whose tail is included in any start-up failure, so a broken server explains
    itself in the test report.
    """

    def __init__(
        self,
        name: str,
        command: list[str],
        *,
        ready_url: str | None = None,
        tcp_port: int | None = None,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.name = name
        self.command = command
        self.ready_url = ready_url
        self.tcp_port = tcp_port
        self.cwd = Path(cwd) if cwd else Path(tempfile.mkdtemp(prefix=f"{name}-"))
        self.env = {**os.environ, **(env or {})}
        self.timeout = timeout
        self.log_path = self.cwd / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        """Launch and wait until ready; a child that fails to come up is stopped and its log closed."""
        self.launch()
        try:
            return self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def launch(self) -> None:
        """Start the child without waiting, so that several servers can boot in parallel."""
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed with the process in stop()
        self.process = subprocess.Popen(
            self.command, cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._deadline = time.monotonic() + self.timeout

    def wait_ready(self) -> ServerProcess:
        assert self.process is not None, "launch() first"
        while time.monotonic() < self._deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            if self._ready():
                return self
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {self.timeout}s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        if self.tcp_port is not None and not port_open(self.tcp_port):
            return False
        if self.ready_url is not None:
            try:
                return httpx.get(self.ready_url, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False
        return True

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
