"""MLflow 3 webhook receiver: `POST /webhooks/mlflow` triggers an immediate reconcile of the model it names.

MLflow signs each delivery with `X-MLflow-Signature: v1,<base64 HMAC-SHA256(secret, "<delivery id>.<timestamp>.<raw
body>")>` and sends `X-MLflow-Delivery-Id` and `X-MLflow-Timestamp` (Unix seconds). A delivery is accepted only when
all three are present, the timestamp is within `max_age_seconds` of now, the signature matches, and its delivery id
has not been seen within that window; anything else gets 401 and changes nothing. Replay memory is per process:
a delivery replayed to another replica would only trigger an extra (idempotent) reconcile.

Webhooks only make reconciliation faster: polling continues, because stage transitions fire no webhook and MLflow
delivers fire-and-forget.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable

from tickserve.json_endpoint import BackgroundServer, JsonHandler

log = logging.getLogger("tickserve.registry_sync.webhooks")

PATH = "/webhooks/mlflow"
EVENTS = {
    ("model_version", "created"),
    ("model_version_alias", "created"),
    ("model_version_alias", "deleted"),
    ("model_version_tag", "set"),
    ("model_version_tag", "deleted"),
}
MAX_BODY = 1 << 20


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The X-MLflow-Signature value MLflow sends for this delivery."""
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class DeliveryVerifier:
    """Signature, timestamp window and replay checks; thread-safe."""

    def __init__(self, secret: str, max_age_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self.secret = secret
        self.max_age = max_age_seconds
        self.clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def verify(self, delivery_id: str | None, timestamp: str | None, signature: str | None, body: bytes) -> str | None:
        """None when the delivery is authentic and new, else why it is refused."""
        if not delivery_id or not timestamp or not signature:
            return "unsigned delivery (missing X-MLflow-Delivery-Id, -Timestamp or -Signature)"
        try:
            sent = int(timestamp)
        except ValueError:
            return "malformed X-MLflow-Timestamp"
        now = self.clock()
        if abs(now - sent) > self.max_age:
            return f"timestamp {sent} outside the {self.max_age}s window"
        expected = sign(self.secret, delivery_id, timestamp, body)
        if not any(hmac.compare_digest(expected, candidate.strip()) for candidate in signature.split(" ")):
            return "bad signature"
        with self._lock:
            self._seen = {d: t for d, t in self._seen.items() if now - t <= 2 * self.max_age}
            if delivery_id in self._seen:
                return f"replayed delivery {delivery_id}"
            self._seen[delivery_id] = now
        return None


class WebhookServer:
    """Serves PATH in a background thread; `on_model(registered_model)` is called for each valid delivery."""

    def __init__(self, host: str, port: int, verifier: DeliveryVerifier, on_model: Callable[[str], None]) -> None:
        self.verifier = verifier
        self.on_model = on_model
        self.server = BackgroundServer(host, port, self._handler(), name="registry-sync-webhooks")
        self.port = self.server.port

    def start(self) -> WebhookServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def _handler(self) -> type[JsonHandler]:
        webhooks = self

        class Handler(JsonHandler):
            path_served, max_body, logger = PATH, MAX_BODY, log

            def handle_body(self, body: bytes) -> None:
                refusal = webhooks.verifier.verify(
                    self.headers.get("X-MLflow-Delivery-Id"),
                    self.headers.get("X-MLflow-Timestamp"),
                    self.headers.get("X-MLflow-Signature"),
                    body,
                )
                if refusal is not None:
                    log.warning("webhook refused: %s", refusal)
                    self.reply(401, {"error": refusal})
                    return
                try:
                    delivery = json.loads(body)
                    event = (str(delivery["entity"]), str(delivery["action"]))
                    model = str(delivery["data"]["name"])
                except (ValueError, KeyError, TypeError):
                    self.reply(400, {"error": "not an MLflow webhook payload"})
                    return
                if event not in EVENTS:
                    self.reply(202, {"ignored": ".".join(event)})
                    return
                webhooks.on_model(model)
                self.reply(200, {"reconcile": model})

        return Handler
