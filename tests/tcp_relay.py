"""A loopback TCP relay for tests: it sends each new connection to the next of its targets in turn (round robin, as
kube-proxy spreads connections over a Service's pods), and can be switched off and on (a forge outage: Gitea keeps
running, registry-sync's connections are refused, then work again) or to other targets (a rollout replacing the
pods), cutting the open connections either way."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading

from tickserve.processes import free_port


class TcpRelay:
    def __init__(self, *target_ports: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self._targets = itertools.cycle(target_ports)
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self.up()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def up(self) -> None:
        listener = socket.create_server((self.host, self.port), reuse_port=True)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self._cut()

    def switch(self, *target_ports: int) -> None:
        """New connections go to `target_ports` from now on; open ones are cut, so clients reconnect there."""
        with self._lock:
            self._targets = itertools.cycle(target_ports)
        self._cut()

    close = down

    def _cut(self) -> None:
        with self._lock:
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
                connection.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                target = next(self._targets)
            try:
                upstream = socket.create_connection((self.host, target))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
