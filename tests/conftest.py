"""Fixtures shared by the whole suite: the real embedded broker and fresh topics on it."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from radstream.common.embedded_broker import EmbeddedBroker
from radstream.common.kafka_client import ensure_topics
from radstream.common.settings import EMBEDDED_BROKER_TUNING, KafkaSettings
from radstream.common.topics import Topic
from tests.scratch_database import scratch_database


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """One Tansu broker for the session, on a free loopback port."""
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    with EmbeddedBroker(log_path=log) as broker:
        yield broker


@pytest.fixture
def kafka_settings(kafka_broker: EmbeddedBroker) -> KafkaSettings:
    return KafkaSettings(
        bootstrap=kafka_broker.bootstrap,
        fetch_max_wait_ms=int(EMBEDDED_BROKER_TUNING["RADSTREAM_KAFKA_FETCH_MAX_WAIT_MS"]),
        session_timeout_ms=int(EMBEDDED_BROKER_TUNING["RADSTREAM_KAFKA_SESSION_TIMEOUT_MS"]),
    )


NewTopic = Callable[..., Awaitable[Topic]]


@pytest.fixture
def new_topic(kafka_settings: KafkaSettings) -> NewTopic:
    """Create a uniquely named copy of a registered topic (and its DLQ), isolated per test."""

    async def create(template: Topic, *, partitions: int | None = None) -> Topic:
        topic = Topic(
            name=f"radstream.test{_letters()}.{template.name.split('.')[2]}.v1",
            message=template.message,
            key_field=template.key_field,
            partitions=partitions or template.partitions,
            zone=template.zone,
            description=template.description,
        )
        await ensure_topics(kafka_settings, [topic])
        return topic

    return create


@pytest.fixture
def idempotency_dsn(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'idempotency.sqlite3'}"


def _letters() -> str:
    """Ten random lowercase letters: topic domains are ``[a-z]+``."""
    return "".join(chr(ord("a") + int(digit, 16)) for digit in uuid.uuid4().hex[:10])


POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def drop_postgres_connections(dsn: str) -> None:
    """End every server connection to ``dsn``'s database, as a PostgreSQL restart would."""
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (dsn.rsplit("/", 1)[1],),
        )


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    """A fresh database on the machine's PostgreSQL, dropped afterwards; skips without one."""
    with scratch_database(POSTGRES_ADMIN_DSN, "radstream_test") as dsn:
        if dsn is None:
            pytest.skip("no PostgreSQL on 127.0.0.1:5432")
        yield dsn
