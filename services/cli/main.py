"""radstream: clinical AI for radiology, event-driven, behind the hospital firewall."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from radstream.cli.demo_senders import (
    post_observations,
    send_report,
    store_study,
    wait_until_ready,
)
from radstream.cli.doctor import Status, run_checks
from radstream.cli.render import render_record
from radstream.cli.replay import DEFAULT_GROUP, KINDS, Action, Selection, replay
from radstream.cli.restructure_cli import restructure
from radstream.cli.stack import STATE_DIR, LocalStack
from radstream.cli.tail import records
from radstream.common.errors import MisconfiguredError, RadstreamError, TransientError
from radstream.common.kafka_client import create_topics, describe_topics, ensure_topics
from radstream.common.logs import configure_logging
from radstream.common.service import SERVICES, service_named
from radstream.common.service_spec import RunnableApp
from radstream.common.settings import (
    KafkaSettings,
    ObservabilitySettings,
)
from radstream.common.topics import ALL_TOPICS, DEID_COMPLETED_V1, DLQ_SUFFIX, STUDY_RECEIVED_V1

if TYPE_CHECKING:
    from radstream.deid.batch import BatchSummary
    from radstream.deid.config import DeidSettings
    from radstream.deid.pixels.calibration import RiskThreshold

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
    # Stop on SIGTERM as on Ctrl-C; and on Ctrl-C even when started by a parent that ignores
    # SIGINT (Python leaves an inherited SIG_IGN in place, and the stack would never stop).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if services:
        _ephemeral_deid_key(warn=True)
    bootstrap = KafkaSettings().bootstrap
    stack = LocalStack(bootstrap=bootstrap, services=SERVICES if services else ())
    try:
        with stack:
            asyncio.run(ensure_topics(KafkaSettings(bootstrap=stack.bootstrap), ALL_TOPICS))
            console.print("radstream is up. Join it from another shell with:")
            for name, value in stack.env.items():
                console.print(f"  export {name}={value}")
            for service in stack.running:
                for line in service.describe():
                    console.print(f"  {line}", highlight=False)
                for name, value in service.spec.local_settings.items():
                    console.print(f"    [yellow]local stack only:[/] {name}={value}")
            if not stack.running:
                console.print("  (no services are registered yet: the broker and topics run)")
            console.print(f"Logs in {STATE_DIR / 'logs'}. Ctrl-C stops everything.")
            # Not signal.pause(): a Ctrl-C arriving just before it blocks is handled, and pause()
            # then waits for another signal forever; sleep() returns to Python, which raises it.
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM at any point: the stack has been stopped on the way out
    except RadstreamError as exc:
        raise _fail(exc) from exc
    console.print("stopped.")


def _ephemeral_deid_key(*, warn: bool) -> None:
    """Give a local stack's deid a throwaway key when none is configured."""
    if "RADSTREAM_DEID_KEY" in os.environ or "RADSTREAM_DEID_KEY_FILE" in os.environ:
        return
    os.environ["RADSTREAM_DEID_KEY"] = secrets.token_hex(32)
    if warn:
        console.print(
            "[yellow]RADSTREAM_DEID_KEY is not set: deid runs with a throwaway key, so its "
            "pseudonyms and UIDs will not match those of any other run[/]"
        )


@app.command()
def run(
    name: Annotated[
        str,
        typer.Argument(
            help=f"The service to run, one of: {', '.join(spec.name for spec in SERVICES)}.",
            metavar="|".join(spec.name for spec in SERVICES),
            show_default=False,
        ),
    ],
) -> None:
    """Run one service in the foreground (what a Kubernetes Deployment runs)."""
    configure_logging(ObservabilitySettings(service_name=name))
    try:
        factory = service_named(name).load_factory()
        asyncio.run(_build_and_run(factory))
    except RadstreamError as exc:
        raise _fail(exc) from exc


async def _build_and_run(factory: Callable[[], RunnableApp]) -> None:
    # Inside the loop: the bus's Kafka clients bind to the running event loop when built.
    await factory().run()


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


@app.command(name="replay")
def replay_command(  # noqa: PLR0917 -- one parameter per command-line option
    dlq: Annotated[
        str, typer.Argument(help="The dead-letter topic, e.g. radstream.study.received.v1.dlq.")
    ],
    kind: Annotated[
        str,
        typer.Option(
            help="Which letters: handler-failed (default), poison, crashed, "
            "retry-time-exhausted, or all."
        ),
    ] = "handler-failed",
    error_type: Annotated[
        str | None,
        typer.Option(help="Only letters with this error type (qualified or bare class name)."),
    ] = None,
    group_of: Annotated[
        str | None, typer.Option(help="Only letters of the consumer group that gave up.")
    ] = None,
    group: Annotated[
        str, typer.Option(help="The replay's own consumer group, which keeps its position.")
    ] = DEFAULT_GROUP,
    from_beginning: Annotated[
        bool,
        typer.Option("--from-beginning", help="Look at every letter again, not only new ones."),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be replayed; publish nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """Send dead letters back to their original topic, once what failed them is fixed."""
    if kind not in (*KINDS, "all"):
        raise _fail(MisconfiguredError(f"--kind is one of {', '.join(KINDS)} or all"))
    selection = Selection(
        kinds=frozenset(KINDS) if kind == "all" else frozenset({kind}),
        error_type=error_type,
        group=group_of,
    )
    counts = dict.fromkeys(Action, 0)

    async def run_replay() -> None:
        async for outcome in replay(
            KafkaSettings(),
            dlq,
            selection=selection,
            group=group,
            from_beginning=from_beginning,
            dry_run=dry_run,
        ):
            counts[outcome.action] += 1
            if as_json:
                typer.echo(json.dumps(outcome.as_dict(dlq) | {"dry_run": dry_run}))
            else:
                typer.echo(("dry run: " if dry_run else "") + outcome.line(dlq))

    try:
        asyncio.run(run_replay())
    except (RadstreamError, KafkaError) as exc:  # the cluster unreachable, a commit refused
        raise _fail(exc) from exc
    finally:
        verb = "would replay" if dry_run else "replayed"
        summary = (
            f"{verb} {counts[Action.REPLAYED]}, skipped {counts[Action.SKIPPED]}, "
            f"refused {counts[Action.REFUSED]}"
        )
        typer.echo(summary, err=True)


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
    timeout_s: Annotated[
        float, typer.Option(help="Give up waiting for the services' output after this long.")
    ] = 120.0,
) -> None:
    """Start everything, push synthetic sample data through, print what came out, stop."""
    state = STATE_DIR / "demo"
    os.environ.setdefault("RADSTREAM_BLOB_PHI_URI", f"file://{state / 'blobs' / 'phi'}")
    os.environ.setdefault("RADSTREAM_BLOB_RELEASE_URI", f"file://{state / 'blobs' / 'release'}")
    os.environ.setdefault(
        "RADSTREAM_DELIVERY_IDEMPOTENCY_DSN", f"sqlite:///{state / 'idempotency.sqlite3'}"
    )
    _ephemeral_deid_key(warn=False)  # demo data needs no reproducible pseudonyms
    try:
        with LocalStack(bootstrap=KafkaSettings().bootstrap) as stack:
            console.print(f"broker: RADSTREAM_KAFKA_BOOTSTRAP={stack.bootstrap}")
            names = [service.spec.name for service in stack.running]
            console.print(f"services: {', '.join(names) or 'none registered yet'}")
            os.environ.update(stack.env)
            settings = KafkaSettings()
            asyncio.run(_demo(settings, stack, quiet_s=quiet_s, timeout_s=timeout_s))
    except KeyboardInterrupt:
        console.print("interrupted; stopped everything.")
    except RadstreamError as exc:
        raise _fail(exc) from exc


async def _demo(
    settings: KafkaSettings, stack: LocalStack, *, quiet_s: float, timeout_s: float
) -> None:
    await ensure_topics(settings, ALL_TOPICS)
    ingest = next((svc for svc in stack.running if svc.spec.name == "ingest"), None)
    if ingest is None:
        raise MisconfiguredError("the demo needs the ingest service, which is not registered")
    if not await wait_until_ready(ingest.health_port, timeout_s=timeout_s):
        raise TransientError(f"ingest did not become ready; see {STATE_DIR / 'logs'}")
    console.print("sending what a hospital's systems would send:")
    statuses = await asyncio.to_thread(store_study, "127.0.0.1", ingest.ports["DICOM"])
    console.print(f"  modality -> C-STORE x{len(statuses)}: statuses {_hex_all(statuses)}")
    ack = await send_report("127.0.0.1", ingest.ports["HL7 MLLP"])
    console.print(f"  RIS -> HL7 ORU^R01 over MLLP: ACK {ack}")
    codes = await post_observations(f"http://127.0.0.1:{ingest.ports['HTTP (STOW-RS, FHIR)']}")
    console.print(f"  EHR -> FHIR Observation x{len(codes)}: HTTP {codes}")
    console.print("what came out:")
    # Wait for every running service's output (or the timeout), then for a quiet spell.
    awaited = set(_demo_outputs(stack))
    names = [topic.name for topic in ALL_TOPICS] + [topic.dlq for topic in ALL_TOPICS]
    count = 0
    deadline = time.monotonic() + timeout_s
    async for record in records(
        settings, names, from_beginning=True, max_events=None, idle_timeout_s=timeout_s
    ):
        console.print(render_record(record, show_phi=False).line(), highlight=False, soft_wrap=True)
        count += 1
        awaited.discard(record.topic)
        if not awaited or time.monotonic() > deadline:
            break
    async for record in records(
        settings, names, from_beginning=False, max_events=None, idle_timeout_s=quiet_s
    ):
        console.print(render_record(record, show_phi=False).line(), highlight=False, soft_wrap=True)
        count += 1
    if awaited:
        console.print(
            f"[yellow]no output on {', '.join(sorted(awaited))} within {timeout_s:.0f}s;"
            f" see {STATE_DIR / 'logs'}[/]"
        )
    console.print(f"{count} event(s) on {len(names)} topics. Stopping.")


def _hex_all(statuses: list[int]) -> str:
    return ", ".join(f"0x{status:04X}" for status in statuses)


def _demo_outputs(stack: LocalStack) -> list[str]:
    """The topics on which the running services publish the demo's results."""
    outputs = {"ingest": STUDY_RECEIVED_V1.name, "deid": DEID_COMPLETED_V1.name}
    return [outputs[svc.spec.name] for svc in stack.running if svc.spec.name in outputs]


@app.command()
def deid(  # noqa: PLR0917 -- one parameter per command-line option
    in_dir: Annotated[
        Path,
        typer.Argument(exists=True, file_okay=False, help="Directory of DICOM files to read."),
    ],
    out_dir: Annotated[
        Path, typer.Argument(help="New or empty directory for released/, held/ and reports.")
    ],
    options: Annotated[
        str | None,
        typer.Option(
            help="Profile options, comma-separated (e.g. retain-uids,clean-descriptors); "
            "default RADSTREAM_DEID_OPTIONS."
        ),
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(help="File holding the pseudonymisation key; default RADSTREAM_DEID_KEY."),
    ] = None,
    ephemeral_key: Annotated[
        bool,
        typer.Option(
            "--ephemeral-key",
            help="Use a random one-off key: pseudonyms and UIDs will not match any other run.",
        ),
    ] = False,
    ocr_engine: Annotated[
        str | None,
        typer.Option(
            "--ocr-engine",
            help="OCR engine that checks and reads the pixels: rapidocr (default), tesseract, "
            "easyocr or kserve (with --ocr-url); default RADSTREAM_DEID_OCR_ENGINE.",
        ),
    ] = None,
    ocr_url: Annotated[
        str | None,
        typer.Option(
            "--ocr-url",
            help="The kserve engine's model server, its KServe v2 endpoint (Triton: "
            "grpc://host:8001, or http://host:8000); default RADSTREAM_DEID_OCR_KSERVE_URL.",
        ),
    ] = None,
    leak_rate: Annotated[
        float | None,
        typer.Option(
            "--leak-rate",
            min=0.0,
            max=1.0,
            help="Bound on the rate of PHI-bearing instances released with PHI readable; the "
            "calibrated risk threshold holds the rest for review (default 0.01).",
        ),
    ] = None,
) -> None:
    """De-identify every file under IN_DIR into OUT_DIR (released/, held/, reports).

    Every instance with pixel data is checked for burned-in text; PHI text is filled and the
    output read again before release. Only OUT_DIR/released/ may leave the PHI zone; held/,
    report.html and the other reports are PHI-zone data. Exits 0 once every file has an
    outcome, held and rejected ones included.
    """
    # Imported here: pydicom and spaCy are the deid extra, and slow to load for other commands.
    from radstream.deid.batch import deidentify_directory, find_inputs  # noqa: PLC0415
    from radstream.deid.clean import build_text_cleaner  # noqa: PLC0415
    from radstream.deid.config import parse_options  # noqa: PLC0415
    from radstream.deid.profile import DeidKeys  # noqa: PLC0415

    # pydicom warns quoting values from the files: warnings and log lines go to stderr through
    # the PHI filter, as their category and place.
    configure_logging(
        ObservabilitySettings(service_name="deid", log_json=False, log_level="WARNING")
    )
    try:
        settings = _deid_settings(key_file)
        if options is not None:
            settings = settings.model_copy(update={"options": parse_options(options)})
        settings = _with_ocr(settings, ocr_engine, ocr_url)
        if leak_rate is not None:
            if not 0.0 < leak_rate < 1.0:
                raise typer.BadParameter("--leak-rate must lie strictly between 0 and 1")
            settings = settings.model_copy(update={"leak_rate": leak_rate})
        if ephemeral_key:
            if settings.has_key:
                raise typer.BadParameter(
                    "--ephemeral-key conflicts with the configured key; drop one of them"
                )
            console.print(
                "[yellow]warning:[/yellow] using an ephemeral key: pseudonyms, UIDs and date "
                "shifts will not be reproducible and will not match any other run"
            )
            keys = DeidKeys.from_secret(secrets.token_bytes(32))
        elif not settings.has_key:
            console.print(
                "[red]error:[/red] no pseudonymisation key: pass --key-file, set "
                "RADSTREAM_DEID_KEY or RADSTREAM_DEID_KEY_FILE, or pass --ephemeral-key for "
                "a one-off run whose pseudonyms are not reproducible"
            )
            raise typer.Exit(code=2)
        else:
            keys = settings.keys()
        console.print("loading the PHI recognizer and the OCR engine ...")
        clean_text = build_text_cleaner()
        pixel_stage = settings.pixel_stage(clean_text)
        console.print(_threshold_line(pixel_stage.threshold))
        profile = settings.profile()
        total = len(find_inputs(in_dir))
        with Progress(
            TextColumn("de-identifying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("deid", total=total)
            summary = deidentify_directory(
                in_dir,
                out_dir,
                profile,
                keys,
                clean_text,
                pixel_stage,
                limits=settings.reader_limits(),
                on_entry=lambda _entry: progress.advance(task),
            )
    except RadstreamError as exc:
        raise _fail(exc) from exc
    console.print(_deid_summary(summary))
    console.print(f"released files: {out_dir / 'released'}; reports: {out_dir}")


def _threshold_line(threshold: RiskThreshold) -> str:
    """What the leak-rate bound costs, or that it cannot be had (everything with text held)."""
    from radstream.deid.pixels.calibration import (  # noqa: PLC0415 -- the deid extra
        load_calibration,
        pipeline_fingerprint,
    )

    bound = f"leak rate {threshold.leak_rate:g}"
    calibration = load_calibration(threshold.engine)
    stale = (
        "; [yellow]the calibration measured another version of the pixel stage, so the bound "
        "is not guaranteed (make calibrate-deid)[/yellow]"
        if calibration is not None and calibration.source.get("pipeline") != pipeline_fingerprint()
        else ""
    )
    if threshold.fail_closed:
        return (
            f"[yellow]{bound} cannot be guaranteed with the calibration data for "
            f"{threshold.engine} ({threshold.n_calibration} PHI-bearing instances): every "
            "instance with text is held for review (fail closed)[/yellow]"
        )
    review = (
        f", {calibration.review_rate(threshold):.1%} of text-bearing calibration instances held"
        if calibration is not None
        else ""
    )
    return (
        f"{bound}: risk threshold {threshold.value:.3f} from {threshold.n_calibration} "
        f"PHI-bearing calibration instances ({threshold.engine}){review}{stale}"
    )


def _with_ocr(settings: DeidSettings, engine: str | None, url: str | None) -> DeidSettings:
    """``settings`` with the OCR engine and the kserve engine's URL the options give."""
    if engine is not None:
        settings = settings.model_copy(update={"ocr_engine": engine})
    if url is not None:
        if settings.ocr_engine != "kserve":
            raise typer.BadParameter(
                "--ocr-url names the kserve engine's model server; add --ocr-engine kserve"
            )
        settings = settings.model_copy(update={"ocr_kserve_url": url})
    return settings


def _deid_settings(key_file: Path | None) -> DeidSettings:
    from radstream.deid.config import DeidSettings  # noqa: PLC0415 -- the deid extra

    if key_file is not None:
        return DeidSettings(key_file=key_file, key=None)
    return DeidSettings()


def _deid_summary(summary: BatchSummary) -> Table:
    from radstream.deid.pipeline import InstanceStatus  # noqa: PLC0415 -- the deid extra

    table = Table("outcome", "files", "why")
    colour = {
        InstanceStatus.RELEASED: "green",
        InstanceStatus.HELD: "yellow",
        InstanceStatus.REJECTED: "red",
    }
    for status, count in summary.counts.items():
        why = "; ".join(
            f"{reason} ({times})" for reason, times in summary.reasons(status).most_common(5)
        )
        table.add_row(f"[{colour[status]}]{status.value}[/]", str(count), why)
    table.add_row("total", str(len(summary.entries)), "")
    return table


app.command(name="restructure")(restructure)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
