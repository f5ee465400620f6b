"""Notification channels: live events (SSE hub), webhooks, e-mail over SMTP, the clinic MQTT topic."""
