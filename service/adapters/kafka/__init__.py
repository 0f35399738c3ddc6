"""Kafka: topic provisioning and the outbox relay (producer side)."""
