"""Serving: how the service runs under a process manager (JSON log lines, gunicorn's settings)."""
