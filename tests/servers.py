"""Real servers for tests: the product's own process supervisor, re-exported under a short name."""

from tickserve.processes import ServerProcess, free_port, port_open

__all__ = ["ServerProcess", "free_port", "port_open"]
