"""Storage: migrations, the repository, the database URL."""
