"""Store: SQL tables and queries (SQLite by default, PostgreSQL by URL)."""
