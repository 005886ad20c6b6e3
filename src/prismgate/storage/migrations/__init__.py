"""Alembic migrations of the SQL stores' schema (`prismgate.storage.sql.schema`).

They ship in the wheel and run from code, with no `alembic.ini`:
`prismgate.storage.sql.migrate.upgrade(url)` brings a database to the newest revision.
To write a new revision, compare the schema with a scratch database at the newest one:

    from alembic import command
    from prismgate.storage.sql.migrate import alembic_config

    config = alembic_config()
    config.set_main_option("sqlalchemy.url", "sqlite:///scratch.db")
    command.upgrade(config, "head")
    command.revision(config, message="what changes", autogenerate=True)
"""
