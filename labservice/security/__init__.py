"""Security: who is calling (principal, the peer's address), API keys, dashboard users, CDS Hooks JWTs."""
