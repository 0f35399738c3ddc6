"""The service layer: handlers that turn input records into state, claims and outbox rows."""
