"""tickserve: realtime trading-signal predictions served with KServe."""

__version__ = "0.1.0"
