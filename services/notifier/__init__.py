"""Push notifications: POST every cloud alert, signed, to the configured webhooks."""
