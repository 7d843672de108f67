"""Who a caller is and what it may call: token files and per-method allow-lists (pure; no grpc).

The gRPC transport (services/common/grpc_runtime.py) asks `TokenTable.identify` and
`AllowList.admits`; the helm charts and `vigil tls` write the files these parse.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from pathlib import Path

ANONYMOUS = "anonymous"
# In an allow-list entry: any authenticated identity.
ANY_IDENTITY = "*"
# As an allow-list key: every method the list does not name.
ANY_METHOD = "*"
# A token shorter than this is refused: it could be guessed.
MIN_TOKEN_CHARS = 16


class CredentialsError(ValueError):
    """A credentials file (certificate, key, tokens) is missing, unreadable or malformed; says which and why."""


def _digest(token: str) -> bytes:
    # Compare fixed-length digests, so the comparison's time says nothing about the token's length either.
    return hashlib.sha256(token.encode()).digest()


class TokenTable:
    """Bearer tokens and the identity each stands for; lookups in constant time per entry, tokens never logged."""

    def __init__(self, entries: Mapping[str, str]) -> None:
        # identity -> digest; the plaintext tokens are not kept.
        self._entries = [(identity, _digest(token)) for token, identity in entries.items()]

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def identities(self) -> list[str]:
        """Every identity with a token."""
        return [identity for identity, _ in self._entries]

    def identify(self, token: str) -> str | None:
        """The identity of `token`, or None. Every entry is compared, so timing does not say which matched."""
        digest = _digest(token)
        found: str | None = None
        for identity, expected in self._entries:
            if hmac.compare_digest(digest, expected):
                found = identity
        return found

    @classmethod
    def parse(cls, text: str, source: str = "tokens file") -> TokenTable:
        """Lines "IDENTITY TOKEN"; blank lines and '#' comments skipped. CredentialsError names the line."""
        entries: dict[str, str] = {}
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if len(parts) != 2:
                # The line itself may hold a token: say where, never what.
                raise CredentialsError(f"{source} line {n}: expected 'IDENTITY TOKEN' (two fields), got {len(parts)}")
            identity, token = parts
            if identity in (ANONYMOUS, ANY_IDENTITY):
                raise CredentialsError(f"{source} line {n}: {identity!r} is reserved; name the client")
            if len(token) < MIN_TOKEN_CHARS:
                raise CredentialsError(
                    f"{source} line {n}: the token of {identity!r} is shorter than {MIN_TOKEN_CHARS} characters; "
                    "issue a random one (vigil tls token)"
                )
            if token in entries:
                raise CredentialsError(f"{source} line {n}: {identity!r} has the same token as {entries[token]!r}")
            entries[token] = identity
        return cls(entries)

    @classmethod
    def load(cls, path: Path, setting: str) -> TokenTable:
        """Parse a tokens file; CredentialsError naming the setting when it cannot be read."""
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CredentialsError(f"cannot read {setting} {path}: {exc}") from exc
        table = cls.parse(text, f"{setting} {path}")
        if not len(table):
            raise CredentialsError(f"{setting} {path} holds no tokens: add 'IDENTITY TOKEN' lines or unset it")
        return table


def read_token(path: Path, setting: str) -> str:
    """A client's token: the file's one non-empty line. CredentialsError when unreadable or empty."""
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"cannot read {setting} {path}: {exc}") from exc
    if not token or len(token.split()) != 1:
        raise CredentialsError(f"{setting} {path} must hold exactly one token on one line")
    return token


class AllowList:
    """Which identities may call each method; health checks are always allowed (probes carry no credentials)."""

    def __init__(self, allow: Mapping[str, Iterable[str]]) -> None:
        self._allow = {method: frozenset(who) for method, who in allow.items()}

    def entry(self, method: str) -> frozenset[str]:
        """The identities listed for `method` (a full /pkg.Service/Method path): its own, by name, or '*'."""
        short = method.rsplit("/", 1)[-1]
        for key in (method, short, ANY_METHOD):
            if key in self._allow:
                return self._allow[key]
        return frozenset()

    def admits(self, method: str, identity: str) -> bool:
        """Whether `identity` ("anonymous" for no credentials) may call `method`."""
        if method.startswith("/grpc.health.v1.Health/"):
            return True
        who = self.entry(method)
        if ANONYMOUS in who or identity in who:
            return True
        return identity != ANONYMOUS and ANY_IDENTITY in who

    @property
    def open(self) -> bool:
        """Whether every method admits anonymous callers (nothing to check)."""
        return all(ANONYMOUS in who for who in self._allow.values()) and ANY_METHOD in self._allow
