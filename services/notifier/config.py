"""Settings of the notifier service (env: VIGIL_NOTIFIER__*).

Webhook URLs and the HMAC secret are secrets (a URL often carries a token): they come from the
environment, which the chart fills from a Secret, and are held as ``SecretStr`` so that neither a
log line nor a settings dump shows them. A webhook is named in logs and metrics by its `name`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from services.common.config import CommonSettings

# Shorter secrets are guessable offline from one signed request.
MIN_SECRET_CHARS = 16


class WebhookConfig(BaseModel):
    """One receiver of alerts: a name for logs and metrics, and its URL (secret)."""

    # Validation errors must not echo a URL (it may hold a token) into the start-up log.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    # A Prometheus label value and a log field: lower-case, short, never the URL.
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    url: SecretStr

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The value itself stays out of the message: it may hold a token.
            raise ValueError("must be an http:// or https:// URL with a host")
        return value


class NotifierConfig(BaseModel):
    """Which webhooks get every alert, how deliveries are retried, and how duplicates are recognised."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    consumer_group: str = Field(default="vigil-notifier", min_length=1)
    # JSON in the environment: VIGIL_NOTIFIER__WEBHOOKS='[{"name": "ops", "url": "https://..."}]'.
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    # Signs every request (X-Vigil-Signature, docs/notifier.md); required when webhooks are set.
    hmac_secret: SecretStr | None = None
    # HTTP attempts per webhook for one alert before the alert goes to the dead-letter topic.
    max_attempts: int = Field(default=6, ge=1, le=100)
    # Exponential back-off between attempts: initial * 2^(n-1), capped, with jitter on the upper half.
    initial_backoff_s: float = Field(default=1.0, gt=0)
    max_backoff_s: float = Field(default=60.0, gt=0)
    # A receiver's Retry-After is honoured up to this; longer asks are cut here (one alert must not
    # hold the stream for an hour).
    max_retry_after_s: float = Field(default=300.0, ge=0)
    # Per HTTP attempt: connect + response.
    timeout_s: float = Field(default=10.0, gt=0)
    # Event ids remembered as delivered (per webhook), oldest forgotten first: duplicates of an alert
    # (the uplink's at-least-once sends) within this window are not pushed twice.
    dedup_size: int = Field(default=100_000, ge=1)

    def problems(self) -> list[str]:
        """What keeps this configuration from running, as actionable sentences (empty = fine)."""
        out = []
        if not self.webhooks:
            out.append(
                "no webhooks configured: set VIGIL_NOTIFIER__WEBHOOKS to a JSON list of "
                '{"name": ..., "url": ...} (the chart reads it from notifier.webhooksSecret)'
            )
        names = [w.name for w in self.webhooks]
        if len(set(names)) != len(names):
            out.append(f"webhook names must be unique (they label metrics): {sorted(names)}")
        secret = self.hmac_secret.get_secret_value() if self.hmac_secret is not None else ""
        if len(secret) < MIN_SECRET_CHARS:
            out.append(
                f"VIGIL_NOTIFIER__HMAC_SECRET must hold at least {MIN_SECRET_CHARS} characters (receivers verify "
                "X-Vigil-Signature with it; the chart reads it from notifier.hmacSecret)"
            )
        return out


class NotifierSettings(CommonSettings):
    """Everything the notifier process reads at start-up."""

    # Merged over CommonSettings' config: a bad VIGIL_NOTIFIER__* value is named, never printed.
    model_config = SettingsConfigDict(hide_input_in_errors=True)

    notifier: NotifierConfig = NotifierConfig()
