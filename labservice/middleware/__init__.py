"""Middleware: the HTTP edge's request hooks (authentication, CSRF, security headers, rate limits, idempotency,
text-input checks, the audit trail). Only the app factory, the HTTP API and the dashboard import it."""
