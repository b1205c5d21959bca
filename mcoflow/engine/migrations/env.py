from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from mcoflow.engine.schema import metadata

url = context.config.attributes["url"]
engine = create_engine(url)
try:
    with engine.begin() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
finally:
    engine.dispose()
