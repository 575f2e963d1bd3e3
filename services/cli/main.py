"""radstream: clinical AI for radiology, event-driven, behind the hospital firewall."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from radstream.cli.doctor import Status, run_checks
from radstream.cli.render import render_record
from radstream.cli.samples import sample_events
from radstream.cli.stack import STATE_DIR, LocalStack
from radstream.cli.tail import records
from radstream.common.blobstore import open_blob_stores
from radstream.common.bus import create_bus
from radstream.common.errors import RadstreamError
from radstream.common.kafka_client import create_topics, describe_topics, ensure_topics
from radstream.common.logs import configure_logging
from radstream.common.service import SERVICES, service_named
from radstream.common.settings import (
    BlobSettings,
    DeliverySettings,
    KafkaSettings,
    ObservabilitySettings,
)
from radstream.common.topics import ALL_TOPICS, DLQ_SUFFIX

app = typer.Typer(no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
console = Console()


def _fail(exc: BaseException) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(code=1)


@app.command()
def up(
    services: Annotated[bool, typer.Option(help="Start the registered services too.")] = True,
) -> None:
    """Start a broker (unless RADSTREAM_KAFKA_BOOTSTRAP is set) and every service; Ctrl-C stops."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop the same way as Ctrl-C
    bootstrap = KafkaSettings().bootstrap
    stack = LocalStack(bootstrap=bootstrap, services=SERVICES if services else ())
    try:
        with stack:
            asyncio.run(ensure_topics(KafkaSettings(bootstrap=stack.bootstrap), ALL_TOPICS))
            console.print("radstream is up. Join it from another shell with:")
            for name, value in stack.env.items():
                console.print(f"  export {name}={value}")
            for service in stack.running:
                console.print(
                    f"  {service.spec.name}: pid {service.process.pid}, probes on "
                    f"http://127.0.0.1:{service.health_port}/readyz"
                )
            if not stack.running:
                console.print("  (no services are registered yet: the broker and topics run)")
            console.print(f"Logs in {STATE_DIR / 'logs'}. Ctrl-C stops everything.")
            signal.pause()
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM at any point: the stack has been stopped on the way out
    except RadstreamError as exc:
        raise _fail(exc) from exc
    console.print("stopped.")


@app.command()
def run(name: Annotated[str, typer.Argument(help="Service name, e.g. deid.")]) -> None:
    """Run one service in the foreground (what a Kubernetes Deployment runs)."""
    configure_logging(ObservabilitySettings(service_name=name))
    try:
        factory = service_named(name).load_factory()
        asyncio.run(factory().run())
    except RadstreamError as exc:
        raise _fail(exc) from exc


@app.command()
def topics(
    create: Annotated[bool, typer.Option(help="Create missing registry topics and DLQs.")] = False,
    partitions: Annotated[
        int | None, typer.Option(help="With --create: partitions for every topic.")
    ] = None,
) -> None:
    """List the cluster's topics with their partitions; --create makes the missing ones."""
    try:
        settings = KafkaSettings()
        if create:
            wanted: dict[str, int] = {}
            for topic in ALL_TOPICS:
                count = partitions or topic.partitions
                wanted[topic.name] = wanted[topic.dlq] = count
            created = asyncio.run(create_topics(settings, wanted))
            console.print(f"created {len(created)} topic(s)")
        existing = asyncio.run(describe_topics(settings))
    except RadstreamError as exc:
        raise _fail(exc) from exc
    registry = {topic.name: topic for topic in ALL_TOPICS}
    table = Table("topic", "partitions", "event type", "zone")
    for name, count in sorted(existing.items()):
        known = registry.get(name.removesuffix(DLQ_SUFFIX))
        kind = "dead letters" if name.endswith(DLQ_SUFFIX) else (known.event_type if known else "")
        table.add_row(name, str(count), kind, known.zone if known else "")
    console.print(table)


@app.command()
def tail(  # noqa: PLR0917 -- one parameter per command-line option
    topic: Annotated[list[str], typer.Argument(help="Topic(s) to read.")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning")] = False,
    max_events: Annotated[int | None, typer.Option("--max", help="Stop after N events.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    idle_timeout: Annotated[
        float | None, typer.Option(help="Stop when nothing arrived for this many seconds.")
    ] = None,
    show_phi: Annotated[
        bool, typer.Option(help="Show identifiers and free text instead of ***.")
    ] = False,
) -> None:
    """Show decoded events with their CloudEvents headers (kcat for radstream contracts)."""

    async def follow() -> None:
        async for record in records(
            KafkaSettings(),
            topic,
            from_beginning=from_beginning,
            max_events=max_events,
            idle_timeout_s=idle_timeout,
        ):
            event = render_record(record, show_phi=show_phi)
            typer.echo(event.as_json() if as_json else event.line())

    try:
        asyncio.run(follow())
    except KeyboardInterrupt:
        pass
    except RadstreamError as exc:
        raise _fail(exc) from exc


@app.command()
def doctor() -> None:
    """Check broker, idempotency database, blob stores and model backends; say what is wrong."""
    findings = asyncio.run(run_checks())
    table = Table("check", "status", "detail")
    colour = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "red", Status.INFO: "blue"}
    for finding in findings:
        table.add_row(
            finding.check, f"[{colour[finding.status]}]{finding.status}[/]", finding.detail
        )
    console.print(table)
    if any(finding.status is Status.FAIL for finding in findings):
        raise typer.Exit(code=1)


@app.command()
def demo(
    quiet_s: Annotated[float, typer.Option(help="Stop after this long with no new events.")] = 3.0,
) -> None:
    """Start everything, push synthetic sample data through, print what came out, stop."""
    state = STATE_DIR / "demo"
    os.environ.setdefault("RADSTREAM_BLOB_PHI_URI", f"file://{state / 'blobs' / 'phi'}")
    os.environ.setdefault("RADSTREAM_BLOB_RELEASE_URI", f"file://{state / 'blobs' / 'release'}")
    os.environ.setdefault(
        "RADSTREAM_DELIVERY_IDEMPOTENCY_DSN", f"sqlite:///{state / 'idempotency.sqlite3'}"
    )
    try:
        with LocalStack(bootstrap=KafkaSettings().bootstrap) as stack:
            console.print(f"broker: RADSTREAM_KAFKA_BOOTSTRAP={stack.bootstrap}")
            names = [service.spec.name for service in stack.running]
            console.print(f"services: {', '.join(names) or 'none registered yet'}")
            asyncio.run(_demo(KafkaSettings(bootstrap=stack.bootstrap), quiet_s))
    except KeyboardInterrupt:
        console.print("interrupted; stopped everything.")
    except RadstreamError as exc:
        raise _fail(exc) from exc


async def _demo(settings: KafkaSettings, quiet_s: float) -> None:
    await ensure_topics(settings, ALL_TOPICS)
    bus = create_bus(settings, DeliverySettings(), service="demo")
    stores = open_blob_stores(BlobSettings())
    await bus.start()
    try:
        events = await sample_events(stores.phi)
        for topic, message in events:
            await bus.publish(topic, message)
        console.print(f"published {len(events)} synthetic events; what came out:")
    finally:
        await bus.stop()
    names = [topic.name for topic in ALL_TOPICS] + [topic.dlq for topic in ALL_TOPICS]
    count = 0
    async for record in records(
        settings, names, from_beginning=True, max_events=None, idle_timeout_s=quiet_s
    ):
        console.print(render_record(record, show_phi=False).line(), highlight=False, soft_wrap=True)
        count += 1
    console.print(f"{count} event(s) on {len(names)} topics. Stopping.")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
