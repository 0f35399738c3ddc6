"""Adapters: PostgreSQL, Kafka and Stripe behind small interfaces."""
