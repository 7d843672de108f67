"""Kafka bus (distributed mode) over kafka-python, with the semantics documented in ``base``.

Every client is created lazily, on first use, so importing or constructing a bus never
touches the network and a broker that is down at start-up only delays work.

Delivery is at least once: a consumer commits a record's offset only after its handler
returned and :meth:`KafkaBus.flush` confirmed everything published so far; a crash or an
outage in between re-delivers the record instead of losing it.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition
from kafka.errors import (
    InvalidProducerEpochError,
    InvalidProducerIdMappingError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumberError,
    ProducerFencedError,
    TopicAlreadyExistsError,
    UnknownProducerIdError,
)
from kafka.net import KafkaNetClient

from services.common.bus.base import (
    Bus,
    Consumer,
    ConsumerFailing,
    Handler,
    Message,
    RetryableError,
    encode_headers,
    encode_key,
)
from services.common.config import BusConfig
from services.common.metrics import CONSUMER_FAILING_BATCHES, PRODUCER_REBUILDS

log = logging.getLogger(__name__)

Compression = Literal["gzip"] | None

# Records handled between two commits. Small enough that a crash re-delivers little and a
# slow handler (a VLM call) still returns to poll() well within max_poll_interval_ms.
MAX_POLL_RECORDS = 50
# Succeeded futures are dropped once a thread holds this many, so a publisher that never
# flushes (a camera loop) does not grow without bound; failed ones are kept for flush().
_PRUNE_PENDING_AT = 10_000
# Room on top of max_message_bytes for the record batch, headers and request framing.
_FRAMING_BYTES = 64 * 1024
# How often a consumer refreshes topic metadata (and so notices a topic created after it subscribed).
_METADATA_MAX_AGE_MS = 5000
# Offset commits are small; if one takes longer than this the broker is away, and the next
# poll tries again.
_COMMIT_TIMEOUT_MS = 5_000
# How long a consumer waits before trying again to reach a broker it could not bootstrap from.
_RECONNECT_PAUSE_S = 1.0
# How long close() waits for a running poll to return before it gives up on a stuck one.
_CLOSE_WAIT_S = 15.0
# Broker answers that mean this producer's id/epoch/sequences are gone for good (a broker that lost its
# log, as Tansu with memory storage after a restart, or another producer took over): only a new producer
# (a new producer id) can publish again; kafka-python's own then stays in its fatal state forever.
_PRODUCER_STATE_LOST = (
    UnknownProducerIdError,
    OutOfOrderSequenceNumberError,
    InvalidProducerEpochError,
    InvalidProducerIdMappingError,
    ProducerFencedError,
)


# kafka-python 3.0.12 puts no deadline on a TLS handshake: against a broker that does not speak TLS (it
# reads the ClientHello as the start of a huge request and waits for the rest) a client hangs for ever.
# A handshake of our own, with a deadline, turns that into an error that says what is wrong.
_TLS_PREFLIGHT_S = 10.0


def tls_preflight(config: BusConfig, timeout_s: float) -> None:
    """With SSL or SASL_SSL, complete one TLS handshake with a bootstrap server within `timeout_s`.

    Raises KafkaConnectionError naming the broker and the likely cause; a no-op for plaintext protocols.
    """
    if config.security_protocol not in ("SSL", "SASL_SSL"):
        return
    ctx = ssl.create_default_context(cafile=str(config.ssl_cafile) if config.ssl_cafile else None)
    ctx.check_hostname = config.ssl_check_hostname
    if config.ssl_certfile is not None and config.ssl_keyfile is not None:
        ctx.load_cert_chain(str(config.ssl_certfile), str(config.ssl_keyfile))
    failures = []
    for server in config.bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        host = host.strip("[]")
        try:
            with (
                socket.create_connection((host, int(port)), timeout=timeout_s) as sock,
                ctx.wrap_socket(sock, server_hostname=host) as tls,
            ):
                tls.do_handshake()
            return
        except ssl.SSLCertVerificationError as exc:
            failures.append(
                f"{server}: the broker's certificate is not trusted ({exc.verify_message}; check ssl_cafile)"
            )
        except TimeoutError:
            failures.append(
                f"{server}: no TLS handshake within {timeout_s:.0f}s (does this listener speak "
                f"{config.security_protocol}, or is it plaintext?)"
            )
        except (OSError, ValueError) as exc:
            failures.append(f"{server}: TLS handshake failed: {exc}")
    raise KafkaConnectionError("; ".join(failures))


class PublishError(RuntimeError):
    """A published record was not acknowledged and will not be (rejected, too large, ...)."""


class BrokerUnavailable(PublishError, RetryableError):
    """The broker could not be reached within ``BusConfig.publish_timeout_s``.

    A :class:`RetryableError`, so a handler that lets it escape is retried on the same
    message once the broker is back, instead of being dead-lettered.
    """


class KafkaBus(Bus):
    """A :class:`Bus` on a Kafka-protocol broker (Apache Kafka, Tansu)."""

    def __init__(
        self,
        config: BusConfig,
        client_id: str = "vigil",
        *,
        compression: Compression = None,
        linger_ms: int = 5,
    ) -> None:
        self._config = config
        # TLS/SASL arguments for every client, read now: an unreadable CA or password file fails here, at start-up.
        self._security = config.client_security()
        self._client_id = client_id
        self._compression = compression
        self._linger_ms = linger_ms
        # Creating a client can block for publish_timeout_s while the broker is away; separate
        # locks keep a stuck producer bootstrap from stalling consumers and the admin client.
        self._lock = threading.Lock()
        self._producer_lock = threading.Lock()
        self._admin_lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._admin: KafkaAdminClient | None = None
        self._broker_version: tuple[int, ...] | None = None
        # Each thread flushes (and sees the failures of) only what it published itself, so one
        # consumer thread never commits on the strength of another thread's acknowledgements.
        self._local = threading.local()
        self._consumers: weakref.WeakSet[KafkaGroupConsumer] = weakref.WeakSet()
        self._closed = False

    @property
    def config(self) -> BusConfig:
        """The settings this bus was built from."""
        return self._config

    @property
    def security(self) -> dict[str, Any]:
        """kafka-python's TLS/SASL keyword arguments (empty for PLAINTEXT); holds the SASL password."""
        return dict(self._security)

    @property
    def client_id(self) -> str:
        """Prefix of the client ids this bus reports to the broker."""
        return self._client_id

    # -- publishing ------------------------------------------------------------------
    def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | str | None = None,
        headers: Mapping[str, bytes | str] | None = None,
    ) -> None:
        """Queue one record; raises :class:`BrokerUnavailable` if the topic stays unreachable."""
        producer = self._get_producer()
        record_headers = list(encode_headers(headers).items())
        try:
            future = producer.send(topic, value=bytes(value), key=encode_key(key), headers=record_headers)
        except KafkaTimeoutError as exc:
            raise BrokerUnavailable(
                f"publish to {topic!r}: broker {self._config.bootstrap} unreachable "
                f"for {self._config.publish_timeout_s:.0f}s"
            ) from exc
        except KafkaError as exc:
            if _producer_state_lost(producer, [exc]):
                self._rebuild_producer(producer, exc)
                raise BrokerUnavailable(f"publish to {topic!r}: producer rebuilt after {exc!r}; publish again") from exc
            raise PublishError(f"publish to {topic!r} refused: {exc}") from exc
        pending = self._pending()
        pending.append((topic, future))
        if len(pending) >= _PRUNE_PENDING_AT:
            pending[:] = [(t, f) for t, f in pending if not f.succeeded()]

    def flush(self, timeout_s: float | None = None) -> None:
        """Block until everything this thread published is acknowledged; raise if any of it failed."""
        pending = self._pending()
        if not pending:
            return
        producer = self._get_producer()
        # A record gives up after delivery_timeout_ms (= publish_timeout_s); the margin lets the
        # producer report that failure itself rather than this wait timing out first.
        wait_s = timeout_s if timeout_s is not None else self._config.publish_timeout_s + 10.0
        try:
            producer.flush(timeout=wait_s)
        except KafkaTimeoutError as exc:
            # Batches still unacknowledged this long after an outage can wedge kafka-python's
            # idempotent producer (seen in tests: they never complete). Start a fresh producer
            # (new producer id and sequences); the caller re-publishes, the broker de-duplicates
            # nothing it did not store, and consumers de-duplicate on event ids.
            self._local.pending = []
            self._reset_producer(producer)
            raise BrokerUnavailable(f"{len(pending)} records not acknowledged within {wait_s:.1f}s") from exc
        failures = [(t, f.exception) for t, f in pending if f.failed()]
        unfinished = sum(1 for _, f in pending if not f.is_done)
        self._local.pending = [(t, f) for t, f in pending if not f.is_done]
        if failures:
            topic, first = failures[0]
            message = f"{len(failures)} of {len(pending)} records were not delivered (first: {topic!r}: {first!r})"
            if _producer_state_lost(producer, [exc for _, exc in failures]):
                # Retryable: the caller publishes again, through a new producer.
                self._local.pending = []
                self._rebuild_producer(producer, first)
                raise BrokerUnavailable(f"{message}; producer rebuilt, publish again") from first
            if all(_is_transient(exc) for _, exc in failures):
                raise BrokerUnavailable(message) from first
            raise PublishError(message) from first
        if unfinished:
            # Only possible when another thread's flush raced this one; nothing has failed yet.
            raise BrokerUnavailable(f"{unfinished} records still in flight after flush")

    def _pending(self) -> list[tuple[str, Any]]:
        pending: list[tuple[str, Any]] | None = getattr(self._local, "pending", None)
        if pending is None:
            pending = []
            self._local.pending = pending
        return pending

    def _get_producer(self) -> KafkaProducer:
        with self._producer_lock:
            if self._closed:
                raise PublishError("bus is closed")
            if self._producer is None:
                self._producer = self._new_producer()
            return self._producer

    def _reset_producer(self, stale: KafkaProducer) -> None:
        with self._producer_lock:
            if self._producer is stale:
                self._producer = None
        try:
            stale.close(timeout=0)
        except Exception as exc:  # closing a wedged client must not mask the original failure
            log.warning("closing a stalled producer: %s", exc)

    def _rebuild_producer(self, stale: KafkaProducer, cause: BaseException | None) -> None:
        """Drop a producer whose state the broker no longer knows; the next publish creates a new one."""
        log.warning("producer state lost (%r): rebuilding the producer", cause)
        PRODUCER_REBUILDS.inc()
        self._reset_producer(stale)

    def _new_producer(self) -> KafkaProducer:
        cfg = self._config
        timeout_ms = int(cfg.publish_timeout_s * 1000)
        # Bounded by delivery_timeout_ms, which kafka-python requires to cover one request + linger.
        request_timeout_ms = max(1000, min(30_000, timeout_ms - self._linger_ms))
        try:
            tls_preflight(cfg, min(cfg.publish_timeout_s, _TLS_PREFLIGHT_S))
        except KafkaConnectionError as exc:
            raise BrokerUnavailable(str(exc)) from exc
        try:
            return KafkaProducer(
                bootstrap_servers=cfg.bootstrap,
                client_id=f"{self._client_id}-producer",
                acks="all",
                # Idempotence (the default) keeps retries across a reconnect from duplicating
                # records; infinite retries are bounded by delivery_timeout_ms.
                enable_idempotence=True,
                delivery_timeout_ms=timeout_ms,
                max_block_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
                request_timeout_ms=request_timeout_ms,
                linger_ms=self._linger_ms,
                compression_type=self._compression,
                max_request_size=cfg.max_message_bytes + _FRAMING_BYTES,
                reconnect_backoff_max_ms=1000,
                **self._security,
            )
        except KafkaTimeoutError as exc:
            raise BrokerUnavailable(f"no broker at {cfg.bootstrap} within {cfg.publish_timeout_s:.0f}s") from exc

    def broker_version(self, timeout_ms: int) -> tuple[int, ...]:
        """The broker's protocol version, asked once and remembered; KafkaTimeoutError if unreachable.

        Clients given this version skip their eager bootstrap, which in kafka-python 3.0 leaks an
        IO thread every time it fails: a consumer started while the broker is away must not.
        """
        with self._lock:
            if self._broker_version is not None:
                return self._broker_version
        tls_preflight(self._config, max(1.0, min(timeout_ms / 1000, _TLS_PREFLIGHT_S)))
        client = KafkaNetClient(
            bootstrap_servers=self._config.bootstrap, client_id=f"{self._client_id}-probe", **self._security
        )
        try:
            version = tuple(client.get_broker_version(timeout_ms))
        finally:
            client.close()
        with self._lock:
            self._broker_version = version
        return version

    # -- consuming ----------------------------------------------------------------------
    def consumer(
        self,
        topics: Sequence[str],
        group: str,
        handler: Handler,
        *,
        dead_letter_topic: str | None = None,
        max_attempts: int = 3,
        manual_ack: bool = False,
    ) -> KafkaGroupConsumer:
        """Create a group member; it connects on its first :meth:`~KafkaGroupConsumer.poll`."""
        consumer = KafkaGroupConsumer(
            self,
            list(topics),
            group,
            handler,
            dead_letter_topic=dead_letter_topic,
            max_attempts=max_attempts,
            manual_ack=manual_ack,
        )
        self._consumers.add(consumer)
        return consumer

    # -- administration -----------------------------------------------------------------
    def create_topics(self, names: Iterable[str], num_partitions: int | None = None) -> list[str]:
        """Create the topics that do not exist yet; return the ones created.

        `num_partitions` None means the broker's default. Partitions cannot be added later on
        every broker (Tansu has no CreatePartitions), so choose the final count up front.
        """
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return []
        spec: dict[str, dict[str, int]] = {
            name: {"num_partitions": num_partitions if num_partitions is not None else -1} for name in wanted
        }
        response = self._get_admin().create_topics(spec, raise_errors=False)
        created: list[str] = []
        for topic in response["topics"]:
            code = topic["error_code"]
            if code == 0:
                created.append(topic["name"])
            elif code != TopicAlreadyExistsError.errno:
                raise PublishError(
                    f"creating topic {topic['name']!r} failed: error {code} {topic.get('error_message')}"
                )
        if created:
            log.info("created topics %s", created)
        return created

    def _get_admin(self) -> KafkaAdminClient:
        with self._admin_lock:
            if self._closed:
                raise PublishError("bus is closed")
            if self._admin is None:
                self._admin = KafkaAdminClient(
                    bootstrap_servers=self._config.bootstrap,
                    client_id=f"{self._client_id}-admin",
                    bootstrap_timeout_ms=int(self._config.publish_timeout_s * 1000),
                    **self._security,
                )
            return self._admin

    def close(self) -> None:
        """Close every consumer of this bus, deliver what is queued (bounded), release connections."""
        for consumer in list(self._consumers):
            consumer.close()
        self._closed = True
        with self._producer_lock:
            producer, self._producer = self._producer, None
        with self._admin_lock:
            admin, self._admin = self._admin, None
        if producer is not None:
            producer.close(timeout=min(self._config.publish_timeout_s, 10.0))
        if admin is not None:
            admin.close()


class KafkaGroupConsumer(Consumer):
    """A consumer-group member: handles records in order and commits after handler and flush."""

    def __init__(
        self,
        bus: KafkaBus,
        topics: list[str],
        group: str,
        handler: Handler,
        *,
        dead_letter_topic: str | None,
        max_attempts: int,
        manual_ack: bool = False,
    ) -> None:
        super().__init__(
            bus,
            handler,
            dead_letter_topic=dead_letter_topic,
            max_attempts=max_attempts,
            manual_ack=manual_ack,
            max_failing_s=bus.config.max_failing_s,
            max_consecutive_failures=bus.config.max_consecutive_failures,
        )
        self._kbus = bus
        # Back-off between batches that finished nothing, so a broken flush never spins, and since when.
        self._batch_backoff_s = 0.0
        self._batches_failing_since: float | None = None
        self._topics = topics
        self._group = group
        self._consumer: KafkaConsumer | None = None
        # Offsets handled and flushed but not yet committed (the commit failed); retried each poll.
        self._uncommitted: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._stop = threading.Event()
        # poll() and close() may run on different threads; KafkaConsumer is not thread-safe.
        self._poll_lock = threading.Lock()
        self._closed = False

    @property
    def group(self) -> str:
        """The consumer group this member belongs to."""
        return self._group

    def poll(self, timeout_s: float = 0.5) -> int:
        """Handle what arrives within `timeout_s`, in order per partition, then commit it."""
        with self._poll_lock:
            if self._closed:
                return 0
            consumer = self._connect()
            if consumer is None:
                self._stop.wait(min(timeout_s, _RECONNECT_PAUSE_S))
                return 0
            self._commit(consumer)
            try:
                batch = consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=MAX_POLL_RECORDS)
            except KafkaError as exc:
                # The client reconnects and rejoins by itself; keep polling.
                log.warning("poll of %s (group %s) failed: %s", self._topics, self._group, exc)
                self._stop.wait(min(timeout_s, _RECONNECT_PAUSE_S))
                return 0
            if not batch:
                return 0
            return self._handle_batch(consumer, batch)

    def _handle_batch(self, consumer: KafkaConsumer, batch: Mapping[TopicPartition, list[Any]]) -> int:
        handled: dict[TopicPartition, int] = {}
        # Where each partition must resume if this batch is not finished.
        rewind: dict[TopicPartition, int] = {}
        interrupted = False
        n = 0
        for tp, records in batch.items():
            for record in records:
                if interrupted:
                    rewind.setdefault(tp, record.offset)
                    break
                msg = _to_message(record)
                try:
                    ok = self._handle(msg, self._stop)
                except ConsumerFailing:
                    raise
                except Exception:
                    # The dead-letter publish failed (broker away): handle the record again later.
                    log.exception("could not finish %s[%d]@%d", msg.topic, msg.partition, msg.offset)
                    ok = False
                if not ok:
                    interrupted = True
                    rewind[tp] = record.offset
                    break
                handled[tp] = self._committable(msg)
                n += 1
        failing: str | None = None
        if handled:
            try:
                self._bus.flush()
            except Exception as exc:
                # What the handlers published may be lost: re-handle the whole batch.
                log.error("flush failed, re-handling %d records: %s", sum(len(r) for r in batch.values()), exc)
                handled, n = {}, 0
                rewind = {tp: records[0].offset for tp, records in batch.items() if records}
                failing = f"flush failed: {exc}"
        elif interrupted and not self._stop.is_set():
            failing = "no record of the batch could be finished"
        for tp, offset in rewind.items():
            try:
                consumer.seek(tp, offset)
            except ValueError:
                log.info("%s was revoked; its new owner resumes from the committed offset", tp)
        self._uncommitted.update(handled)
        self._commit(consumer)
        if failing is not None:
            self._failing_batch(failing)
        elif handled:
            self._batch_backoff_s = 0.0
            self._batches_failing_since = None
        return n

    def _failing_batch(self, why: str) -> None:
        """A batch finished nothing: count it, back off (exponentially), and fail once it has lasted too long.

        Issue 13: with a producer the broker no longer knew, gating re-handled the same 50 frames 26 times
        in 3 minutes at 80% CPU while reporting SERVING.
        """
        CONSUMER_FAILING_BATCHES.labels(self._group).inc()
        now = time.monotonic()
        if self._batches_failing_since is None:
            self._batches_failing_since = now
        failing_s = now - self._batches_failing_since
        if failing_s > self._max_failing_s:
            raise ConsumerFailing(f"group {self._group}: no batch finished for {failing_s:.0f}s (last: {why})")
        self._batch_backoff_s = min(max(self._backoff0, self._batch_backoff_s * 2), self._max_backoff)
        log.warning("group %s: %s; backing off %.1fs", self._group, why, self._batch_backoff_s)
        self._stop.wait(self._batch_backoff_s)

    def _commit(self, consumer: KafkaConsumer) -> None:
        if self._acks is not None:
            # Acks arrive from the application's threads between polls.
            for (topic, partition), offset in self._acks.committable().items():
                tp = TopicPartition(topic, partition)
                if offset > self._committed.get(tp, -1):
                    self._uncommitted[tp] = offset
        if not self._uncommitted:
            return
        assigned = consumer.assignment()
        # A partition lost in a rebalance is re-delivered to its new owner: never commit it from here.
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in self._uncommitted.items() if tp in assigned}
        if offsets:
            try:
                consumer.commit(offsets=offsets, timeout_ms=_COMMIT_TIMEOUT_MS)
            except KafkaError as exc:
                log.warning(
                    "commit of %d partitions (group %s) failed, retrying next poll: %s",
                    len(offsets),
                    self._group,
                    exc,
                )
                return
        self._committed.update({tp: o.offset for tp, o in offsets.items()})
        self._uncommitted.clear()

    def _connect(self) -> KafkaConsumer | None:
        if self._consumer is not None:
            return self._consumer
        cfg = self._kbus.config
        session_ms = cfg.session_timeout_ms
        try:
            api_version = self._kbus.broker_version(int(_RECONNECT_PAUSE_S * 1000))
            consumer = KafkaConsumer(
                bootstrap_servers=cfg.bootstrap,
                client_id=f"{self._kbus.client_id}-{self._group}",
                group_id=self._group,
                enable_auto_commit=False,
                # Tansu's end offsets are unreliable and a new group must see everything.
                auto_offset_reset="earliest",
                session_timeout_ms=session_ms,
                heartbeat_interval_ms=max(100, session_ms // 3),
                max_poll_records=MAX_POLL_RECORDS,
                # One record may be as large as max_message_bytes.
                max_partition_fetch_bytes=max(1024 * 1024, cfg.max_message_bytes + _FRAMING_BYTES),
                fetch_max_bytes=max(50 * 1024 * 1024, cfg.max_message_bytes + _FRAMING_BYTES),
                api_version=api_version,
                reconnect_backoff_max_ms=1000,
                # A consumer that subscribes before its topic exists (the producing service starts
                # later) is assigned nothing until its next metadata refresh: 5 s here, not 5 min.
                metadata_max_age_ms=_METADATA_MAX_AGE_MS,
                **self._kbus.security,
            )
            consumer.subscribe(self._topics)
        except KafkaError as exc:
            log.warning("cannot reach %s for group %s yet: %s", cfg.bootstrap, self._group, exc)
            return None
        self._consumer = consumer
        return consumer

    def run(self, stop: threading.Event, idle_timeout_s: float = 0.5) -> None:
        """Poll until `stop` is set; a retry loop in the handler gives up when it is."""
        self._stop = stop
        super().run(stop, idle_timeout_s)

    def close(self) -> None:
        """Commit what was handled, leave the group; the group's offsets stay with the broker."""
        self._stop.set()
        # A poll stuck inside the client (see Stage.watch) holds the lock for good: do not wait on it.
        if not self._poll_lock.acquire(timeout=_CLOSE_WAIT_S):
            log.error("consumer of group %s is stuck in poll; leaving it (its offsets stay as committed)", self._group)
            return
        try:
            self._close_locked()
        finally:
            self._poll_lock.release()

    def _close_locked(self) -> None:
        if self._closed:
            return
        self._closed = True
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            self._commit(consumer)
            consumer.close(autocommit=False, timeout_ms=_COMMIT_TIMEOUT_MS)
        except KafkaError as exc:
            log.warning("closing consumer of group %s: %s", self._group, exc)


def _to_message(record: Any) -> Message:
    return Message(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value if record.value is not None else b"",
        headers={k: (v if v is not None else b"") for k, v in (record.headers or [])},
        timestamp_ms=int(record.timestamp or 0),
    )


def _producer_state_lost(producer: KafkaProducer, errors: Iterable[BaseException | None]) -> bool:
    """True when `producer` can never publish again: the broker forgot its id, or it is in its fatal state."""
    if any(isinstance(exc, _PRODUCER_STATE_LOST) for exc in errors):
        return True
    manager = getattr(producer, "_transaction_manager", None)
    return bool(manager is not None and manager.has_fatal_error())


def _is_transient(exc: BaseException | None) -> bool:
    """True for failures an outage explains (timeouts, lost connections), as kafka-python marks them."""
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))
