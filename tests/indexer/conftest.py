"""Fixtures of the indexer tests: a real PostgreSQL server per session, and ``index_db``,
which runs a test once on SQLite and once on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.pgserver import PgServer, PgUnavailable, running_server
from node.indexer.db import IndexDb, PostgresDb, SqliteDb


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    try:
        with running_server() as server:
            yield server
    except PgUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    return pg_server.new_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_settings(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, str]:
    """``[indexer]`` settings of a fresh database of the test's backend."""
    if backend == "postgresql":
        return {"backend": "postgresql", "postgresql_dsn": request.getfixturevalue("pg_dsn")}
    return {"backend": "sqlite", "sqlite_file": str(tmp_path / "index.sqlite3")}


@pytest.fixture
def index_db(db_settings: dict[str, str]) -> Iterator[IndexDb]:
    if db_settings["backend"] == "postgresql":
        db: IndexDb = PostgresDb(db_settings["postgresql_dsn"])
    else:
        db = SqliteDb(Path(db_settings["sqlite_file"]))
    db.create_schema()
    try:
        yield db
    finally:
        db.close()
