"""Kafka entrypoint of the notifier: decode an Alert, push it to every webhook, let the bus commit after.

The offset of a record is committed only once every webhook has it, or once the record is on the
dead-letter topic: a crash in between re-delivers the record, and the duplicate log (or the
receiver, on X-Vigil-Event-Id) absorbs the repeat. Delivery is at least once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from services.common.bus import Message, PoisonMessage, RetryableError
from services.notifier import metrics
from services.notifier.delivery import (
    DeliveredLog,
    DeliveryResult,
    MalformedAlert,
    Response,
    RetryPolicy,
    alert_payload,
    decode_alert,
    deliver,
    encode_body,
    request_headers,
)

log = logging.getLogger(__name__)

# (url, body, headers, timeout_s) -> Response; services.notifier.transport.post in the service.
Transport = Callable[[str, bytes, Mapping[str, str], float], Response]


class UndeliverableAlert(PoisonMessage):
    """At least one webhook refused the alert for good or ran out of attempts: dead-letter the record."""


@dataclass(frozen=True)
class Webhook:
    """A receiver as the handler uses it: its name (logs, metrics) and URL (never logged)."""

    name: str
    url: str


class AlertNotifier:
    """Handles one record of the alerts topic: every webhook that lacks the alert gets it, signed."""

    def __init__(
        self,
        webhooks: Sequence[Webhook],
        secret: bytes,
        policy: RetryPolicy,
        transport: Transport,
        *,
        timeout_s: float = 10.0,
        dedup_size: int = 100_000,
        rng: random.Random | None = None,
    ) -> None:
        self._webhooks = list(webhooks)
        self._secret = secret
        self._policy = policy
        self._transport = transport
        self._timeout_s = timeout_s
        self._delivered = DeliveredLog(dedup_size)
        self._rng = rng or random.Random()
        # Set by the stage: a back-off in progress ends at once and the record is handled again later.
        self._stop = threading.Event()
        # Webhooks are tried side by side: one receiver's outage and back-off must not delay the others.
        self._pool = (
            ThreadPoolExecutor(len(self._webhooks), thread_name_prefix="notifier-webhook")
            if len(self._webhooks) > 1
            else None
        )

    def stop_on(self, stop: threading.Event) -> None:
        """Make back-off waits end when `stop` is set (the stage's shutdown event)."""
        self._stop = stop

    def close(self) -> None:
        """Release the webhook threads (after the consumer stopped calling)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __call__(self, msg: Message) -> None:
        """Push the alert in `msg` to every webhook that lacks it; raise to dead-letter or retry it."""
        try:
            alert = decode_alert(msg.value)
        except MalformedAlert as exc:
            metrics.ALERTS.labels(outcome="malformed").inc()
            raise PoisonMessage(str(exc)) from exc
        names = [w.name for w in self._webhooks]
        missing = set(self._delivered.missing(alert.event_id, names))
        if not missing:
            metrics.ALERTS.labels(outcome="duplicate").inc()
            log.info("alert %s already delivered to every webhook; skipped", alert.event_id)
            return
        body = encode_body(alert_payload(alert))
        hooks = [w for w in self._webhooks if w.name in missing]
        if self._pool is None or len(hooks) == 1:
            results = [self._deliver(hook, alert.event_id, body) for hook in hooks]
        else:
            results = list(self._pool.map(lambda hook: self._deliver(hook, alert.event_id, body), hooks))
        failed, interrupted = [], []
        for hook, result in zip(hooks, results, strict=True):
            if result.delivered:
                # Remembered even if another webhook is interrupted: the re-handled record skips this one.
                self._delivered.mark(alert.event_id, hook.name)
                metrics.DELIVERIES.labels(webhook=hook.name, outcome="delivered").inc()
                if alert.sent_time_ns:
                    metrics.ALERT_DELAY_SECONDS.labels(webhook=hook.name).observe(
                        max(0.0, (time.time_ns() - alert.sent_time_ns) / 1e9)
                    )
                log.info("alert %s delivered to %s (%s)", alert.event_id, hook.name, result.describe())
            elif result.interrupted:
                interrupted.append(hook.name)
            else:
                metrics.DELIVERIES.labels(webhook=hook.name, outcome="failed").inc()
                log.error("alert %s not delivered to %s: %s", alert.event_id, hook.name, result.describe())
                failed.append(f"{hook.name}: {result.describe()}")
        if interrupted:
            # Neither dead-lettered nor committed: the next start (or the partition's next owner) sends it.
            raise RetryableError(f"stopping while alert {alert.event_id} waited to retry {', '.join(interrupted)}")
        if failed:
            metrics.ALERTS.labels(outcome="dead_lettered").inc()
            raise UndeliverableAlert(f"alert {alert.event_id} undeliverable to " + "; ".join(failed))
        metrics.ALERTS.labels(outcome="delivered").inc()

    def _deliver(self, hook: Webhook, event_id: str, body: bytes) -> DeliveryResult:
        def attempt(n: int) -> Response:
            headers = request_headers(self._secret, event_id, body, int(time.time()), n)
            t0 = time.perf_counter()
            response = self._transport(hook.url, body, headers, self._timeout_s)
            metrics.ATTEMPT_SECONDS.labels(webhook=hook.name).observe(time.perf_counter() - t0)
            return response

        def counted(response: Response) -> None:
            metrics.ATTEMPTS.labels(webhook=hook.name, result=response.result_label()).inc()
            if response.status is None or not 200 <= response.status < 300:
                log.warning("alert %s to %s: %s", event_id, hook.name, response.describe())

        return deliver(
            attempt,
            self._policy,
            wait=lambda s: not self._stop.wait(s),
            clock=time.time,
            rng=self._rng,
            on_attempt=counted,
        )
