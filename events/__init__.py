"""Outbound events: the outbox the services write in their own transaction, and its signed deliveries."""
