"""Connection options for Kafka clients, derived once from :class:`KafkaSettings`.

The FastStream broker and the plain aiokafka clients (``radstream tail``, ``topics``, the
benchmark) must connect the same way: PLAINTEXT locally, ``SASL_SSL`` with SCRAM or ``SSL`` with
client certificates (mTLS) in a hospital. This module is the one place that translates settings
into client options, and the one place topics are created.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from radstream.common.settings import KafkaSettings
from radstream.common.topics import Topic


def ssl_context(settings: KafkaSettings) -> ssl.SSLContext | None:
    """Return the TLS context for ``SSL``/``SASL_SSL``, with a client certificate when set."""
    if not settings.security_protocol.endswith("SSL"):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
    )
    context.check_hostname = settings.ssl_check_hostname
    if settings.ssl_certfile and settings.ssl_keyfile:
        password = (
            settings.ssl_key_password.get_secret_value() if settings.ssl_key_password else None
        )
        context.load_cert_chain(settings.ssl_certfile, settings.ssl_keyfile, password=password)
    return context


def faststream_security(settings: KafkaSettings) -> BaseSecurity | None:
    """Return the FastStream security object for the configured protocol."""
    context = ssl_context(settings)
    if not settings.security_protocol.startswith("SASL"):
        return BaseSecurity(ssl_context=context) if context else None
    username = settings.sasl_username or ""
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    use_ssl = settings.security_protocol == "SASL_SSL"
    if settings.sasl_mechanism == "PLAIN":
        return SASLPlaintext(username, password, ssl_context=context, use_ssl=use_ssl)
    if settings.sasl_mechanism == "SCRAM-SHA-256":
        return SASLScram256(username, password, ssl_context=context, use_ssl=use_ssl)
    return SASLScram512(username, password, ssl_context=context, use_ssl=use_ssl)


def aiokafka_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for aiokafka producers, consumers and admin clients."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.require_bootstrap(),
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
    }
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return options


async def ensure_topics(
    settings: KafkaSettings,
    topics: Iterable[Topic],
    *,
    with_dlq: bool = True,
) -> list[str]:
    """Create the topics (and their dead-letter topics) that do not exist yet; return those created.

    Partition counts come from each :class:`Topic`; dead-letter topics get one partition per
    source partition too, so a replay keeps the key order.
    """
    wanted: dict[str, int] = {}
    for topic in topics:
        wanted[topic.name] = topic.partitions
        if with_dlq:
            wanted[topic.dlq] = topic.partitions
    return await create_topics(settings, wanted)


async def create_topics(settings: KafkaSettings, partitions_by_name: dict[str, int]) -> list[str]:
    """Create the named topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, count, settings.replication_factor)
            for name, count in sorted(partitions_by_name.items())
            if name not in existing
        ]
        if missing:
            # Another process may win the race; the topic then exists, which is all we need.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        return [topic.name for topic in missing]
    finally:
        await admin.close()


async def describe_topics(settings: KafkaSettings) -> dict[str, int]:
    """Return ``{topic: partition count}`` for every topic the cluster has."""
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await admin.start()
    try:
        names = sorted(await admin.list_topics())
        described = await admin.describe_topics(names) if names else []
        return {item["topic"]: len(item["partitions"]) for item in described}
    finally:
        await admin.close()
