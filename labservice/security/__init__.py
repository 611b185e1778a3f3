"""Security: who is calling (principal), API keys and dashboard users, audit, limits, idempotency."""
