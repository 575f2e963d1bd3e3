"""A real Orthanc PACS for tests and benchmarks: started on free ports, stopped cleanly.

Orthanc (Debian ``orthanc`` + ``orthanc-dicomweb``) has no bind-address option: it listens on
every interface. So it runs with ``RemoteAccessAllowed`` off (its REST API answers loopback
only), on ephemeral ports nobody else expects, and is always reached through ``127.0.0.1``.
Each server gets its own storage and index folders and its own generated configuration.

The helpers below talk to Orthanc's REST API with a plain synchronous ``httpx`` client, the way
an operator's script would; radstream's own code under test uses its own clients.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from radstream.common.embedded_broker import die_with_parent, free_loopback_port

ORTHANC_BINARY = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"

_PR_SET_PDEATHSIG = 1


class OrthancUnavailableError(RuntimeError):
    """Orthanc is not installed here, or did not come up."""


def orthanc_missing_reason() -> str | None:
    """Why Orthanc cannot run here (for ``pytest.skip``), or None when it can."""
    if not ORTHANC_BINARY.exists():
        return f"{ORTHANC_BINARY} is not installed (Debian package 'orthanc')"
    if not DICOMWEB_PLUGIN.exists():
        return f"{DICOMWEB_PLUGIN} is not installed (Debian package 'orthanc-dicomweb')"
    return None


@dataclass(frozen=True, kw_only=True)
class DicomModality:
    """A DICOM peer Orthanc may send to (``DicomModalities`` entry), e.g. ingest's SCP."""

    name: str
    ae_title: str
    port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True, kw_only=True)
class OrthancOptions:
    """What the generated configuration says besides ports and folders."""

    ae_title: str = "RSORTHANC"
    # Seconds without a new instance before Orthanc calls a study stable (its default is 60).
    stable_age_s: int = 1
    modalities: tuple[DicomModality, ...] = ()
    # Basic-auth users of the REST API; empty leaves it open (loopback only).
    users: Mapping[str, str] = field(default_factory=dict)
    # Accept C-STORE from any calling AE title (tests and benchmarks send as various AEs).
    accept_any_calling_ae: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)


class OrthancServer:
    """An Orthanc process with its own configuration, storage and free loopback ports.

    Parameters
    ----------
    workdir
        Folder for the configuration, the storage and index, and Orthanc's log.
    options
        What the configuration says besides ports and folders.
    """

    def __init__(self, workdir: Path, options: OrthancOptions | None = None) -> None:
        self.workdir = workdir
        self.options = options or OrthancOptions()
        self.http_port = 0
        self.dicom_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the REST API (loopback)."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """Base URL of the DICOMweb plugin (``.../studies`` is STOW-RS and QIDO-RS)."""
        return f"{self.url}/dicom-web"

    @property
    def ae_title(self) -> str:
        """Orthanc's own AE title."""
        return self.options.ae_title

    @property
    def log_path(self) -> Path:
        """Orthanc's own output."""
        return self.workdir / "orthanc.log"

    @property
    def running(self) -> bool:
        """Whether the Orthanc process is alive."""
        return self._process is not None and self._process.poll() is None

    def configuration(self) -> dict[str, Any]:
        """The configuration document written for the next start."""
        storage = self.workdir / "storage"
        config: dict[str, Any] = {
            "Name": f"radstream-test-{self.options.ae_title}",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.options.ae_title,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.options.users),
            "RegisteredUsers": dict(self.options.users),
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": self.options.accept_any_calling_ae,
            "DicomAlwaysAllowEcho": True,
            "StableAge": self.options.stable_age_s,
            "DicomModalities": {
                modality.name: {
                    "AET": modality.ae_title,
                    "Host": modality.host,
                    "Port": modality.port,
                }
                for modality in self.options.modalities
            },
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
            # No HTTP compression: the benchmark compares receive paths, not gzip.
            "HttpCompressionEnabled": False,
            "SaveJobs": False,
        }
        config.update(self.options.extra)
        return config

    def start(self, *, timeout: float = 30.0, attempts: int = 3) -> OrthancServer:
        """Start Orthanc and wait until ``GET /system`` answers; retry on a taken port."""
        reason = orthanc_missing_reason()
        if reason is not None:
            raise OrthancUnavailableError(reason)
        if self.running:
            return self
        last_error: OrthancUnavailableError | None = None
        for _ in range(attempts):
            self.http_port, self.dicom_port = free_loopback_port(), free_loopback_port()
            try:
                self._launch(timeout)
                return self
            except OrthancUnavailableError as exc:  # most often a port taken meanwhile
                last_error = exc
        assert last_error is not None
        raise last_error

    def _launch(self, timeout: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_path = self.workdir / "orthanc.json"
        config_path.write_text(json.dumps(self.configuration(), indent=2))
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [str(ORTHANC_BINARY), str(config_path)],
            cwd=self.workdir,
            # Orthanc's DICOM layer (DCMTK) turns Nagle's algorithm off only when TCP_NODELAY
            # is set; without it every C-STORE response waits for a delayed ACK (~45 ms).
            env={**os.environ, "TCP_NODELAY": "1"},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509 -- only prctl, no locks taken
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self.stop()
                raise OrthancUnavailableError(
                    f"Orthanc exited with code {code} before answering; see {self.log_path}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if self.client(timeout=1.0).get("/system").status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise OrthancUnavailableError(f"Orthanc did not answer /system within {timeout:.0f}s")

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop Orthanc: SIGTERM (it closes its index cleanly), SIGKILL after ``timeout``."""
        process = self.stop_nowait()
        if process is not None:
            finish_stopping(process, timeout=timeout)

    def stop_nowait(self) -> subprocess.Popen[bytes] | None:
        """Ask Orthanc to stop (SIGTERM) and return its process without waiting.

        Orthanc needs about three seconds to wind its servers down; a test suite lets that
        happen in the background and reaps the process later (:func:`finish_stopping`).
        """
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
        if self._log is not None:
            self._log.close()
            self._log = None
        return process

    def wipe(self) -> None:
        """Delete the storage (Orthanc must be stopped)."""
        if self.running:
            raise RuntimeError("stop Orthanc before wiping its storage")
        shutil.rmtree(self.workdir / "storage", ignore_errors=True)

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the REST API, as a script would use it ------------------------------------------------

    def client(self, *, timeout: float = 30.0) -> httpx.Client:
        """A client for the REST API, with the first configured user's credentials."""
        auth = next(iter(self.options.users.items()), None)
        return httpx.Client(base_url=self.url, timeout=timeout, auth=auth)

    def upload(self, instances: Iterable[bytes]) -> list[str]:
        """Store Part 10 instances through ``POST /instances``; return their Orthanc ids."""
        ids = []
        with self.client() as client:
            for data in instances:
                response = client.post(
                    "/instances", content=data, headers={"Content-Type": "application/dicom"}
                )
                response.raise_for_status()
                ids.append(str(response.json()["ID"]))
        return ids

    def sop_instance_uids(self) -> set[str]:
        """The SOP Instance UIDs of every instance Orthanc holds."""
        with self.client() as client:
            response = client.get("/instances", params={"expand": ""})
            response.raise_for_status()
            return {item["MainDicomTags"]["SOPInstanceUID"] for item in response.json()}

    def wait_until_stable(self, *, timeout: float = 30.0) -> None:
        """Wait until Orthanc calls every study it holds stable (``StableAge`` after the last)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            studies = self.get_json("/studies", expand="")
            if all(study["IsStable"] for study in studies):
                return
            time.sleep(0.1)
        raise TimeoutError(f"Orthanc's studies did not become stable within {timeout:.0f}s")

    def get_json(self, path: str, **params: str) -> Any:
        """``GET`` a REST path and return its JSON."""
        with self.client() as client:
            response = client.get(path, params=params)
            response.raise_for_status()
            return response.json()

    def post_json(self, path: str, body: Any, *, timeout: float = 60.0) -> Any:
        """``POST`` a JSON body to a REST path and return its JSON answer."""
        with self.client(timeout=timeout) as client:
            response = client.post(path, json=body)
            response.raise_for_status()
            return response.json()


def finish_stopping(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    """Wait for a stopping Orthanc; SIGKILL it after ``timeout`` seconds."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def running_orthanc(
    workdir: Path, options: OrthancOptions | None = None
) -> Iterator[OrthancServer]:
    """Run an Orthanc for the duration of a ``with`` block."""
    with OrthancServer(workdir, options) as server:
        yield server


# -- synthetic studies (fake patients only) -------------------------------------------------------


def synthetic_ct_study(
    count: int,
    *,
    study_uid: str | None = None,
    rows: int = 16,
    columns: int = 16,
    patient_id: str = "SYNTH-PACS-0001",
) -> list[bytes]:
    """``count`` small CT instances of one fake patient's study, as Part 10 bytes."""
    study_uid = study_uid or generate_uid()
    series_uid = generate_uid()
    pixels = bytes((i * 7) % 251 for i in range(rows * columns * 2))
    instances = []
    for number in range(1, count + 1):
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = generate_uid()
        ds.StudyDate = "20240105"
        ds.StudyTime = "101500"
        ds.AccessionNumber = "SYNTH-ACC-PACS"
        ds.Modality = "CT"
        ds.Manufacturer = "SynthCorp"
        ds.PatientName = "SYNTHETIC^PACS"
        ds.PatientID = patient_id
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.StudyID = "SYN1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = number
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = rows
        ds.Columns = columns
        ds.BitsAllocated = 16
        ds.BitsStored = 12
        ds.HighBit = 11
        ds.PixelRepresentation = 0
        ds.PixelData = pixels
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        buffer = io.BytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        instances.append(buffer.getvalue())
    return instances
