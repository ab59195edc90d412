"""Databases for the state store tests: a SQLite file per test (tmp_path), and a PostgreSQL
database per test (fixtures from tests/support/postgres.py, loaded by tests/conftest.py)."""
