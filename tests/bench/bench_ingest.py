"""Benchmark: DICOM receive throughput, radstream's ingest next to Orthanc, as a ratio.

Run with ``python -m tests.bench.bench_ingest``; ``--quick`` for a smaller run, ``--json PATH``
for the results file (default ``.build/bench/ingest.json``). A benchmark, not a test: nothing
asserts on time.

Input: small synthetic CT instances (fake patient, 64x64 16-bit pixels, about 9 KB each),
written to files once, fresh SOP Instance UIDs for every round and receiver (a receiver that
has seen an instance answers a re-send as a duplicate, which would flatter it).

* **C-STORE**: several associations in parallel (default 4 x 100 instances, one study each),
  each a pynetdicom SCU in its own process (``spawn``), sending the files. Receivers:
  radstream's ``DicomScp`` (the production path: strict parse, PHI blob store with fsync,
  ``InstanceStored`` on a real ``Bus`` to the embedded broker with acks=all, study assembly in
  SQLite, audit line) and Orthanc 1.10.1 (Debian, default storage and SQLite index).
* **STOW-RS**: the same files, as many HTTP clients in parallel, ``multipart/related`` requests
  of 25 instances; radstream's ``POST /dicomweb/studies`` (when :mod:`radstream.ingest.http_app`
  exists) and Orthanc's DICOMweb plugin ``POST /dicom-web/studies``.

A round sends every instance once to each receiver, in rotating order; throughput is the
number of instances acknowledged as stored divided by the span from the first sender's start
to the last one's end. Reported: the median of the rounds, each round, the receiver process's
CPU per instance, and radstream/Orthanc ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from radstream.common import topics
from radstream.common.bus import create_bus
from radstream.common.embedded_broker import EmbeddedBroker
from radstream.common.kafka_client import ensure_topics
from radstream.common.settings import BlobSettings, DeliverySettings, KafkaSettings
from radstream.ingest.app import IngestCore, build_core
from radstream.ingest.config import AssemblySettings, DicomSettings, IngestSettings
from radstream.ingest.scp import DicomScp
from tests.bench.dicom_senders import SendResult, send_c_store, send_stow_rs, warm
from tests.bench.report import save_report
from tests.orthanc import OrthancOptions, OrthancServer, synthetic_ct_study

DEFAULT_JSON = Path(".build/bench/ingest.json")
SENDER_AE = "BENCHSCU"
RADSTREAM = "radstream"
ORTHANC = "orthanc"
STOW_BATCH = 25


@dataclass(frozen=True, kw_only=True)
class BenchConfig:
    """How much to send."""

    associations: int = 4
    per_association: int = 100
    rounds: int = 3
    rows: int = 64

    @property
    def instances(self) -> int:
        """Instances per round and receiver."""
        return self.associations * self.per_association


FULL = BenchConfig()
QUICK = BenchConfig(associations=2, per_association=40)


@dataclass(frozen=True, kw_only=True)
class RoundResult:
    """One receiver, one transport, one round."""

    stored: int
    failed: int
    seconds: float
    cpu_seconds: float
    error: str | None = None

    @property
    def per_s(self) -> float:
        """Instances acknowledged per second."""
        return self.stored / self.seconds if self.seconds > 0 else 0.0


@dataclass(kw_only=True)
class Inputs:
    """The files to send, one folder per (round, receiver, transport), one list per sender."""

    root: Path
    config: BenchConfig
    bytes_per_instance: int = 0
    _next: int = field(default=0)

    def batch(self) -> list[list[str]]:
        """Fresh files (new UIDs) for one run: one list of paths per sender."""
        self._next += 1
        folder = self.root / f"run-{self._next:03d}"
        folder.mkdir(parents=True)
        senders = []
        for sender in range(self.config.associations):
            paths = []
            study = synthetic_ct_study(
                self.config.per_association,
                rows=self.config.rows,
                columns=self.config.rows,
                patient_id=f"SYNTH-BENCH-{sender:03d}",
            )
            for number, data in enumerate(study):
                path = folder / f"{sender:02d}-{number:04d}.dcm"
                path.write_bytes(data)
                paths.append(str(path))
            self.bytes_per_instance = len(study[0])
            senders.append(paths)
        return senders


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


class Receiver(Protocol):
    """A receiver under test."""

    name: str
    pid: int
    c_store: tuple[str, int, str]  # host, port, called AE title
    stow_url: str | None
    stow_token: str | None


# -- radstream ----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class RadstreamReceiver:
    """radstream's ingest core + DICOM SCP (+ STOW-RS when the HTTP app exists), in-process."""

    core: IngestCore
    scp: DicomScp
    stow_url: str | None
    stow_token: str | None = None
    name: str = RADSTREAM
    pid: int = field(default_factory=os.getpid)

    @property
    def c_store(self) -> tuple[str, int, str]:
        """Where the SCP listens."""
        return ("127.0.0.1", self.scp.port, self.scp.settings.ae_title)


def ingest_settings(root: Path, broker: EmbeddedBroker) -> IngestSettings:
    """Production defaults, with stores and databases under ``root``."""
    return IngestSettings(
        kafka=KafkaSettings(bootstrap=broker.bootstrap),
        delivery=DeliverySettings(idempotency_dsn=f"sqlite:///{root}/idempotency.sqlite3"),
        blob=BlobSettings(phi_uri=f"file://{root}/phi", release_uri=f"file://{root}/release"),
        assembly=AssemblySettings(dsn=f"sqlite:///{root}/assembly.sqlite3"),
        dicom=DicomSettings(
            ae_title="RADSTREAM",
            port=0,
            allowed_calling_aes=frozenset({SENDER_AE}),
            max_associations=16,
        ),
        audit_path=root / "audit.jsonl",
    )


@contextlib.asynccontextmanager
async def running_radstream(root: Path) -> AsyncIterator[RadstreamReceiver]:
    """Broker, bus, core, SCP (and HTTP app, when there is one), all started."""
    with EmbeddedBroker(log_path=root / "tansu.log") as broker:
        settings = ingest_settings(root, broker)
        await ensure_topics(settings.kafka, [topics.INSTANCE_STORED_V1, topics.STUDY_RECEIVED_V1])
        registry = CollectorRegistry()
        bus = create_bus(settings.kafka, settings.delivery, service="ingest", registry=registry)
        core = build_core(settings, bus, registry=registry)
        scp = DicomScp(settings.dicom, core.receiver, metrics=core.metrics)
        await bus.start()
        await core.assembly.open()
        await core.assembler.start()
        await scp.start()
        try:
            async with running_stow(settings, core, registry) as (stow_url, token):
                yield RadstreamReceiver(core=core, scp=scp, stow_url=stow_url, stow_token=token)
        finally:
            await scp.stop()
            await core.assembler.stop()
            await bus.stop()
            await core.assembly.close()
            await core.audit.close()


def stow_available() -> bool:
    """Whether radstream has an HTTP app serving STOW-RS (engineer B's ``http_app``)."""
    return importlib.util.find_spec("radstream.ingest.http_app") is not None


@contextlib.asynccontextmanager
async def running_stow(
    settings: IngestSettings, core: IngestCore, registry: CollectorRegistry
) -> AsyncIterator[tuple[str | None, str | None]]:
    """radstream's STOW-RS endpoint (URL, bearer token); (None, None) if not built yet."""
    if not stow_available():
        yield None, None
        return
    from tests.bench.ingest_http import BENCH_TOKEN, serve_stow

    async with serve_stow(settings, core, registry) as url:
        yield url, BENCH_TOKEN


# -- rounds -------------------------------------------------------------------------------------


async def send(
    pool: ProcessPoolExecutor, job: Callable[..., SendResult], jobs: Sequence[tuple[Any, ...]]
) -> tuple[int, int, float, str | None]:
    """Run one sender job per argument tuple; return (stored, failed, span, first error)."""
    loop = asyncio.get_running_loop()
    futures = [loop.run_in_executor(pool, job, *args) for args in jobs]
    results: list[SendResult] = await asyncio.gather(*futures)
    span = max(r.finished for r in results) - min(r.started for r in results)
    error = next((r.error for r in results if r.error), None)
    return sum(r.stored for r in results), sum(r.failed for r in results), span, error


async def run_once(
    receiver: Receiver, transport: str, batch: list[list[str]], pool: ProcessPoolExecutor
) -> RoundResult:
    """Send one batch to one receiver over one transport."""
    cpu_before = _cpu_seconds(receiver.pid)
    if transport == "C-STORE":
        host, port, ae = receiver.c_store
        stored, failed, span, error = await send(
            pool, send_c_store, [(host, port, ae, paths) for paths in batch]
        )
    else:
        assert receiver.stow_url is not None
        url, token = receiver.stow_url, receiver.stow_token
        stored, failed, span, error = await send(
            pool, send_stow_rs, [(url, paths, STOW_BATCH, token) for paths in batch]
        )
    cpu = _cpu_seconds(receiver.pid) - cpu_before
    return RoundResult(stored=stored, failed=failed, seconds=span, cpu_seconds=cpu, error=error)


@dataclass(frozen=True, kw_only=True)
class OrthancReceiver:
    """Orthanc as a receiver."""

    server: OrthancServer
    name: str = ORTHANC

    @property
    def pid(self) -> int:
        """Orthanc's process id (for its CPU time)."""
        process = self.server._process
        assert process is not None
        return process.pid

    @property
    def c_store(self) -> tuple[str, int, str]:
        """Orthanc's DICOM port."""
        return ("127.0.0.1", self.server.dicom_port, self.server.ae_title)

    @property
    def stow_url(self) -> str:
        """Orthanc's STOW-RS endpoint."""
        return f"{self.server.dicomweb_url}/studies"

    @property
    def stow_token(self) -> None:
        """Orthanc's REST API is open on loopback here."""
        return None


async def run(config: BenchConfig) -> dict[str, Any]:
    """Start both receivers, run the interleaved rounds, summarize."""
    started = time.perf_counter()
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("pydicom").propagate = False
    with tempfile.TemporaryDirectory(prefix="radstream-bench-ingest-") as tmp:
        root = Path(tmp)
        inputs = Inputs(root=root / "inputs", config=config)
        context = get_context("spawn")
        with ProcessPoolExecutor(max_workers=config.associations, mp_context=context) as pool:
            await asyncio.gather(
                *(
                    asyncio.get_running_loop().run_in_executor(pool, warm)
                    for _ in range(config.associations)
                )
            )
            orthanc_server = OrthancServer(root / "orthanc", OrthancOptions(ae_title="ORTHANC"))
            with orthanc_server:
                async with running_radstream(root / "radstream") as radstream:
                    receivers: list[Receiver] = [radstream, OrthancReceiver(server=orthanc_server)]
                    transports = ["C-STORE"] + (["STOW-RS"] if radstream.stow_url else [])
                    # Warm-up, not timed: first-use costs (topic metadata, database files,
                    # Orthanc's first patient) are not what a round should measure.
                    warmup = Inputs(
                        root=root / "warmup",
                        config=BenchConfig(associations=config.associations, per_association=5),
                    )
                    for transport in transports:
                        for receiver in receivers:
                            batch = await asyncio.to_thread(warmup.batch)
                            await run_once(receiver, transport, batch, pool)
                    results: dict[str, list[RoundResult]] = {}
                    for number in range(config.rounds):
                        order = receivers if number % 2 == 0 else receivers[::-1]
                        for transport in transports:
                            for receiver in order:
                                batch = await asyncio.to_thread(inputs.batch)
                                result = await run_once(receiver, transport, batch, pool)
                                results.setdefault(f"{receiver.name} {transport}", []).append(
                                    result
                                )
                    orthanc_version = orthanc_server.get_json("/system")["Version"]
    return {
        "config": asdict(config),
        "instances_per_round": config.instances,
        "bytes_per_instance": inputs.bytes_per_instance,
        "transports": transports,
        "stow_rs_radstream": "measured"
        if "STOW-RS" in transports
        else "not built yet (no radstream.ingest.http_app)",
        "orthanc_version": orthanc_version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "wall_s": time.perf_counter() - started,
        "results": {
            name: [asdict(r) | {"per_s": r.per_s} for r in rounds]
            for name, rounds in results.items()
        },
        "median": {
            name: {
                "per_s": statistics.median(r.per_s for r in rounds),
                "cpu_ms": statistics.median(1e3 * r.cpu_seconds / max(r.stored, 1) for r in rounds),
                "failed": sum(r.failed for r in rounds),
                "error": next((r.error for r in rounds if r.error), None),
            }
            for name, rounds in results.items()
        },
    }


def table(report: dict[str, Any]) -> str:
    """Receivers x transports: median, rounds, CPU per instance, failures; then the ratios."""
    lines = [
        f"{'receiver':<20}{'inst/s':>8}  {'rounds (inst/s)':<20}{'CPU ms/inst':>12}{'failed':>8}"
    ]
    for name, rounds in report["results"].items():
        m = report["median"][name]
        each = " / ".join(f"{r['per_s']:.0f}" for r in rounds)
        lines.append(
            f"{name:<20}{m['per_s']:>8.1f}  {each:<20}{m['cpu_ms']:>12.2f}{m['failed']:>8}"
        )
    lines.append("")
    for name, m in report["median"].items():
        if m["error"]:
            lines.append(f"{name} failures, first: {m['error']}")
    for transport in report["transports"]:
        ours = report["median"][f"{RADSTREAM} {transport}"]["per_s"]
        theirs = report["median"][f"{ORTHANC} {transport}"]["per_s"]
        lines.append(
            f"ratio radstream/orthanc {transport}: x{ours / theirs:.2f} "
            f"({ours:.0f} vs {theirs:.0f} inst/s)"
        )
    if "STOW-RS" not in report["transports"]:
        lines.append(f"STOW-RS: {report['stow_rs_radstream']}; C-STORE only")
    return "\n".join(lines)


def describe(report: dict[str, Any]) -> str:
    """What was run, in one paragraph."""
    config = report["config"]
    return (
        f"{config['associations']} senders x {config['per_association']} synthetic CT instances "
        f"({config['rows']}x{config['rows']} 16-bit, {report['bytes_per_instance']} bytes), one "
        f"pynetdicom SCU / httpx client per process; fresh UIDs per run; {config['rounds']} "
        f"interleaved rounds, median. radstream: SCP -> strict parse -> PHI store (fsync) -> "
        f"InstanceStored on the embedded broker (acks=all) -> SQLite assembly -> audit line. "
        f"Orthanc {report['orthanc_version']} (Debian) defaults + TCP_NODELAY=1 (DCMTK keeps "
        f"Nagle on without it); senders set TCP_NODELAY too. STOW-RS: {STOW_BATCH} instances "
        f"per request, radstream with bearer auth. Python {report['python']}, "
        f"{report['cpus']} CPUs."
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tests.bench.bench_ingest``."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_ingest",
        description="\n\n".join((__doc__ or "").split("\n\n")[:2]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="2 x 40 instances, for development")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})"
    )
    parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    if args.rounds:
        config = BenchConfig(**{**asdict(config), "rounds": args.rounds})
    warnings.simplefilter("ignore")
    report = asyncio.run(run(config))
    print()
    print(describe(report))
    print()
    print(table(report))
    save_report(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
