"""A stand-in for a Kubernetes pool Service in front of several predictor pods: a loopback TCP relay that sends
each new connection to the next of its targets in turn (round robin, as kube-proxy spreads connections), and
that can be switched to other targets, cutting the open connections (a rollout replacing the pods)."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading

from tickserve.processes import free_port


class PoolRelay:
    def __init__(self, *target_ports: int, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = free_port()
        self._targets = itertools.cycle(target_ports)
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server((host, self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def switch(self, *target_ports: int) -> None:
        """New connections go to `target_ports` from now on; open ones are cut, so clients reconnect there."""
        with self._lock:
            self._targets = itertools.cycle(target_ports)
            for connection in self._open:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._open.clear()

    def close(self) -> None:
        self._listener.close()
        self.switch(0)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
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
