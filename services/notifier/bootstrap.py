"""Composition root of the notifier: webhooks and secret from settings, the alerts-topic consumer."""

from __future__ import annotations

import threading

from services.common.auth import CredentialsError
from services.common.bus import Bus, Handler
from services.common.runtime import Stage, StageError
from services.common.signing import verifier_from_config
from services.notifier import transport
from services.notifier.config import NotifierSettings
from services.notifier.consumer import AlertNotifier, Transport, Webhook
from services.notifier.delivery import RetryPolicy


def build(settings: NotifierSettings, bus: Bus | None, *, post: Transport = transport.post) -> Stage:
    """The notifier stage: one consumer of the alerts topic, dead-lettering to its .dlq topic."""
    if bus is None:
        raise StageError("the notifier consumes the alerts topic: it needs a bus")
    cfg = settings.notifier
    problems = cfg.problems()
    if problems:
        raise StageError("notifier settings: " + "; ".join(problems))
    assert cfg.hmac_secret is not None  # problems() checked it
    notifier = AlertNotifier(
        [Webhook(w.name, w.url.get_secret_value()) for w in cfg.webhooks],
        cfg.hmac_secret.get_secret_value().encode(),
        RetryPolicy(cfg.max_attempts, cfg.initial_backoff_s, cfg.max_backoff_s, cfg.max_retry_after_s),
        post,
        timeout_s=cfg.timeout_s,
        dedup_size=cfg.dedup_size,
    )
    topic = settings.topics.alerts
    try:
        # With signing keys, an alert no edge uplink signed is counted and dead-lettered, never pushed.
        verifier = verifier_from_config(settings.signing)
    except CredentialsError as exc:
        raise StageError(str(exc)) from exc
    handler: Handler = notifier if verifier is None else verifier.wrap(notifier)
    # The handler retries each webhook itself; a handler bug gets the bus's usual 3 tries.
    consumer = bus.consumer([topic], cfg.consumer_group, handler, dead_letter_topic=settings.topics.dead_letter(topic))

    def consume(stop: threading.Event) -> None:
        notifier.stop_on(stop)
        consumer.run(stop)

    return Stage(
        "notifier",
        # A loop rather than `consumers`: the handler's back-off must see the stage's stop event.
        loops=[("consumer", consume)],
        closers=[consumer.close, notifier.close],
        description=f"{topic} (group {cfg.consumer_group}) -> webhooks {', '.join(w.name for w in cfg.webhooks)}",
    )
