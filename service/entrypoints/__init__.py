"""Thin entrypoints: the command line and the Kafka consumer."""
