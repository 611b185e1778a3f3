"""Persistence: SQLAlchemy 2 models, Alembic migrations and the repository the service and views use.

SQLite file by default (instance/labservice.sqlite); PostgreSQL when DATABASE_URL says so.
Views and the engine never see SQL: they call labservice.store.repository.
"""
