"""Leader election on a `coordination.k8s.io/v1` Lease, so that of several registry-sync replicas only one acts.

The holder renews `spec.renewTime` every `retry_period`; a candidate takes the Lease over only when it has not
been renewed for `lease_duration`. Every write is a replace carrying the read `resourceVersion`, so two candidates
racing for an expired Lease cannot both win (the API server answers 409 to the second). A leader that cannot
renew within `renew_deadline` stops acting (`is_leader` turns false) before anyone else may take over.

    elector = LeaseElector(api_client, namespace="tickserve", name="registry-sync", identity=pod_name)
    elector.start()              # background thread
    if elector.is_leader: ...    # checked before every reconcile pass
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("tickserve.registry_sync.leader")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LeaseElector:
    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")
        self.api = client.CoordinationV1Api(api_client)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self._renewed_at: float | None = None  # monotonic time of our last successful acquire/renew
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="registry-sync-leader", daemon=True)

    @property
    def is_leader(self) -> bool:
        renewed = self._renewed_at
        return renewed is not None and time.monotonic() - renewed < self.renew_deadline

    def start(self) -> LeaseElector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.retry_period * 2)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    self._renewed_at = time.monotonic()
            except ApiException as error:
                log.warning("lease %s/%s: %s %s", self.namespace, self.name, error.status, error.reason)
            except OSError as error:
                log.warning("lease %s/%s: API server unreachable: %s", self.namespace, self.name, error)
            self._stop.wait(self.retry_period)

    def try_acquire_or_renew(self) -> bool:
        """One round: True when this identity holds the Lease afterwards."""
        now = _now()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            body = client.V1Lease(
                metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=self._spec(now, acquired=now, transitions=0),
            )
            try:
                self.api.create_namespaced_lease(self.namespace, body)
            except ApiException as conflict:
                if conflict.status == 409:
                    return False
                raise
            log.info("lease %s/%s acquired by %s (created)", self.namespace, self.name, self.identity)
            return True

        spec = lease.spec or client.V1LeaseSpec()
        holder = spec.holder_identity
        if holder == self.identity:
            lease.spec = self._spec(now, acquired=spec.acquire_time or now, transitions=spec.lease_transitions or 0)
        else:
            renewed = spec.renew_time or spec.acquire_time
            duration = spec.lease_duration_seconds or self.lease_duration
            if holder and renewed is not None and now - renewed < dt.timedelta(seconds=duration):
                return False
            lease.spec = self._spec(now, acquired=now, transitions=(spec.lease_transitions or 0) + 1)
        try:
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as conflict:
            if conflict.status == 409:
                return False
            raise
        if holder != self.identity:
            log.info("lease %s/%s taken over by %s from %s", self.namespace, self.name, self.identity, holder)
        return True

    def _spec(self, now: dt.datetime, *, acquired: dt.datetime, transitions: int) -> client.V1LeaseSpec:
        return client.V1LeaseSpec(
            holder_identity=self.identity,
            lease_duration_seconds=int(self.lease_duration),
            acquire_time=acquired,
            renew_time=now,
            lease_transitions=transitions,
        )
