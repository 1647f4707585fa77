"""Alembic environment: runs against the engine handed over in config.attributes["engine"]."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import app.store.models  # noqa: F401  (registers the tables)

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if engine is None:
        from app.config import get_settings
        from app.store.db import make_engine

        engine = make_engine(get_settings().effective_database_url)
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        context.run_migrations()


run_migrations_online()
