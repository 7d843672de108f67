"""HMAC-SHA256 signatures on bus records that cross a trust boundary (the edge's alerts into the cloud).

The uplink signs every record it sends to the cloud; a cloud consumer that turns them into alerts
for people verifies first, and a record nobody signed, or whose signature does not match, is counted
and dead-lettered instead of shown. The signature rides in one header, ``vigil-signature:
v1:KEY_ID:HEX``, over the topic, the key and the value, so a signed evidence record cannot be replayed
as an alert and no byte of a payload can change. Replays of a whole signed alert remain possible and
are harmless: consumers de-duplicate on event_id.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from pathlib import Path

from prometheus_client import Counter

from services.common.auth import CredentialsError
from services.common.bus.base import Handler, Message, PoisonMessage
from services.common.config import SigningConfig

SIGNATURE_HEADER = "vigil-signature"
_VERSION = "v1"
# A short key would make the HMAC guessable.
MIN_KEY_BYTES = 16

REJECTED = Counter(
    "vigil_signing_rejected_total",
    "Records refused by a verifier: unsigned, signed with an unknown key, or not matching their signature",
    ["topic", "reason"],
)


class BadSignature(PoisonMessage):
    """A record without a valid signature: never handled, dead-lettered (a PoisonMessage)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _mac(secret: bytes, topic: str, key: bytes | None, value: bytes) -> str:
    # Length-prefixed fields: no choice of topic, key and value can collide with another's.
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for part in (_VERSION.encode(), topic.encode(), key or b"", value):
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


class Keyring:
    """Signing keys by id; parsed from lines "KEY_ID SECRET" ('#' comments), secrets never logged."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        self._keys = dict(keys)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._keys

    def secret(self, key_id: str) -> bytes | None:
        """The secret of `key_id`, or None."""
        return self._keys.get(key_id)

    @property
    def ids(self) -> list[str]:
        """Every key id."""
        return sorted(self._keys)

    @classmethod
    def parse(cls, text: str, source: str = "keys file") -> Keyring:
        """Parse the keys file's text; CredentialsError names the line (never the secret)."""
        keys: dict[str, bytes] = {}
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2 or ":" in parts[0]:
                raise CredentialsError(f"{source} line {n}: expected 'KEY_ID SECRET' (a key id without ':')")
            key_id, secret = parts
            if len(secret.encode()) < MIN_KEY_BYTES:
                raise CredentialsError(
                    f"{source} line {n}: key {key_id!r} is shorter than {MIN_KEY_BYTES} bytes; "
                    "issue one with `vigil tls signing-key`"
                )
            if key_id in keys:
                raise CredentialsError(f"{source} line {n}: key id {key_id!r} appears twice")
            keys[key_id] = secret.encode()
        if not keys:
            raise CredentialsError(f"{source} holds no keys: add a 'KEY_ID SECRET' line")
        return cls(keys)

    @classmethod
    def load(cls, path: Path, setting: str = "signing.keys_file") -> Keyring:
        """Read and parse a keys file; CredentialsError naming the setting when it cannot be read."""
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CredentialsError(f"cannot read {setting} {path}: {exc}") from exc
        return cls.parse(text, f"{setting} {path}")


class Signer:
    """Signs records with one key of a keyring."""

    def __init__(self, keyring: Keyring, key_id: str) -> None:
        secret = keyring.secret(key_id)
        if secret is None:
            raise CredentialsError(f"signing.key_id {key_id!r} is not in the keys file (it has {keyring.ids})")
        self.key_id = key_id
        self._secret = secret

    def headers(self, topic: str, key: bytes | str | None, value: bytes) -> dict[str, str]:
        """The header that signs this record; merge it into the record's headers."""
        raw_key = key.encode() if isinstance(key, str) else key
        return {SIGNATURE_HEADER: f"{_VERSION}:{self.key_id}:{_mac(self._secret, topic, raw_key, value)}"}


class Verifier:
    """Checks records' signatures against a keyring; BadSignature (dead-lettered) when one does not hold."""

    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    def verify(self, msg: Message) -> str:
        """The key id that signed `msg`; BadSignature (counted by reason) when unsigned, unknown or forged."""
        try:
            return self._verify(msg)
        except BadSignature as exc:
            REJECTED.labels(msg.topic, exc.reason).inc()
            raise

    def _verify(self, msg: Message) -> str:
        header = msg.headers.get(SIGNATURE_HEADER)
        if header is None:
            raise BadSignature(
                "unsigned", f"unsigned record: no {SIGNATURE_HEADER} header (not sent by a Vigil uplink)"
            )
        version, _, rest = header.decode(errors="replace").partition(":")
        key_id, _, signature = rest.partition(":")
        if version != _VERSION or not key_id or not signature:
            raise BadSignature("malformed", f"malformed {SIGNATURE_HEADER} header (expected v1:KEY_ID:HEX)")
        secret = self._keyring.secret(key_id)
        if secret is None:
            raise BadSignature("unknown_key", f"signed with unknown key {key_id!r}: add it to this side's keys file")
        expected = _mac(secret, msg.topic, msg.key, msg.value)
        if not hmac.compare_digest(expected, signature):
            raise BadSignature("forged", f"signature of key {key_id!r} does not match the record (altered or forged)")
        return key_id

    def wrap(self, handler: Handler) -> Handler:
        """`handler`, called only for records whose signature holds; the others raise BadSignature."""

        def verified(msg: Message) -> None:
            self.verify(msg)
            handler(msg)

        return verified


def signer_from_config(cfg: SigningConfig) -> Signer | None:
    """The signer the settings ask for (None without a keys file); CredentialsError when a file is wrong."""
    if cfg.keys_file is None:
        return None
    keyring = Keyring.load(cfg.keys_file)
    if not cfg.key_id:
        raise CredentialsError("signing.keys_file is set without signing.key_id: name the key to sign with")
    return Signer(keyring, cfg.key_id)


def verifier_from_config(cfg: SigningConfig) -> Verifier | None:
    """The verifier the settings ask for (None: records are not checked); CredentialsError when a file is wrong."""
    if cfg.keys_file is None or not cfg.required:
        return None
    return Verifier(Keyring.load(cfg.keys_file))
