"""The ocr service in the Helm chart and the image, and deid's wiring to it.

ocr reads pixels that carry burned-in names and birth dates: it is PHI zone like ingest and deid.
Its gRPC port takes calls from deid's pods only and speaks TLS unless ``insecure: true``; it
reaches nothing (a remote engine: Triton only); the settings the chart gives it and deid are
ones their settings classes read and accept; and the image holds what each engine needs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest

from radstream.deid.config import REMOTE_OCR_ENGINE, DeidSettings
from radstream.ocr.client import GrpcOcrEngine
from radstream.ocr.config import DEFAULT_GRPC_PORT, OcrClientSettings, OcrSettings
from radstream.ocr.engines import DEFAULT_ENGINE, ENGINE_NAMES
from tests.settings_variables import variables
from tests.unit.deploy.test_helm_chart import (
    CHART,
    KUBERNETES,
    MINIMAL,
    PRODUCTION,
    SELECTOR_NAMES,
    container,
    environment,
    merged,
    of_kind,
    render,
    volume,
)

ROOT = CHART.parents[1]
OCR_TLS = {"secret": "ocr-tls"}
# MINIMAL with deid reading pixels through the ocr service over TLS.
WITH_OCR: dict[str, Any] = merged(
    MINIMAL,
    {
        "services": {
            "ocr": {"enabled": True, "replicas": 1, "tls": OCR_TLS},
            "deid": {"ocr": {"via": "service"}},
        }
    },
)
TRITON = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "triton"}}}]
WITH_KSERVE: dict[str, Any] = merged(
    WITH_OCR,
    {
        "networkPolicy": {"egress": {"triton": {"to": TRITON}}},
        "services": {
            "ocr": {"engine": "kserve", "kserve": {"url": "triton.triton.svc:8001"}},
        },
    },
)


def ocr_environment(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The ocr container's variables: all of them, as it shares no ConfigMap."""
    main = container(of_kind(docs, "Deployment")["ocr"])
    assert "envFrom" not in main, "ocr needs none of the shared Kafka and store settings"
    for entry in main["env"]:
        assert "valueFrom" not in entry, f"{entry['name']}: a secret in the environment"
    return {entry["name"]: entry["value"] for entry in main["env"]}


def pod_labels(docs: list[dict[str, Any]], service: str) -> dict[str, str]:
    labels: dict[str, str] = of_kind(docs, "Deployment")[service]["spec"]["template"]["metadata"][
        "labels"
    ]
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a podSelector's matchLabels pick pods with ``labels``."""
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def settings_from(plain: dict[str, str], model: type[Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``model`` as a pod with ``plain`` in its environment reads it."""
    for name, _ in variables(model):
        monkeypatch.delenv(name, raising=False)
    for name, value in plain.items():
        monkeypatch.setenv(name, value)
    return model()


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return render(PRODUCTION)


def test_ocr_is_off_and_deid_reads_pixels_in_process_by_default() -> None:
    docs = render(MINIMAL)

    assert "ocr" not in of_kind(docs, "Deployment")
    plain, _ = environment(docs, "deid")
    assert plain["RADSTREAM_DEID_OCR_ENGINE"] == DEFAULT_ENGINE
    assert not any(name.startswith("RADSTREAM_OCR_CLIENT_") for name in plain)
    egress = of_kind(docs, "NetworkPolicy")["deid"]["spec"]["egress"]
    assert "ocr" not in json.dumps(egress), "no way out to an ocr that is not there"


def test_ocr_runs_as_a_probed_deployment_with_grpc_and_metrics_ports(
    production: list[dict[str, Any]],
) -> None:
    deployment = of_kind(production, "Deployment")["ocr"]
    main = container(deployment)

    assert main["command"] == ["radstream", "run", "ocr"]
    assert deployment["spec"]["replicas"] == 2
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"health": 8081, "grpc": DEFAULT_GRPC_PORT}
    # The kubelet's gRPC probe speaks no TLS: the probes ask the health port over HTTP.
    assert main["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    startup = main["startupProbe"]["periodSeconds"] * main["startupProbe"]["failureThreshold"]
    assert startup >= 120, "time to load an engine's models before liveness counts"
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    service = of_kind(production, "Service")["ocr"]["spec"]
    assert service["clusterIP"] == "None", "deid resolves every ocr pod, not one virtual IP"
    assert {(p["name"], p["port"]) for p in service["ports"]} == {
        ("health", 8081),
        ("grpc", DEFAULT_GRPC_PORT),
    }
    budget = of_kind(production, "PodDisruptionBudget")["ocr"]["spec"]
    assert budget["maxUnavailable"] == 1
    [endpoint] = of_kind(production, "ServiceMonitor")["ocr"]["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("health", "/metrics")


def test_ocr_runs_locked_down_with_nothing_that_outlives_the_pod(
    production: list[dict[str, Any]],
) -> None:
    deployment = of_kind(production, "Deployment")["ocr"]
    pod = deployment["spec"]["template"]["spec"]
    main = container(deployment)

    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert volume(deployment, "work") == {"name": "work", "emptyDir": {}}
    assert volume(deployment, "tmp")["emptyDir"]["medium"] == "Memory"
    assert of_kind(production, "PersistentVolumeClaim") == {}


def test_the_settings_the_chart_gives_ocr_are_ones_it_reads_and_accepts(
    production: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = ocr_environment(production)
    read = {name for name, _ in variables(OcrSettings)}

    assert sorted(set(plain) - read) == [], "variables ocr does not read"
    settings = settings_from(plain, OcrSettings, monkeypatch)
    assert settings.engine == "rapidocr"
    assert (settings.host, settings.port) == ("0.0.0.0", DEFAULT_GRPC_PORT)
    assert settings.tls_certfile == Path("/etc/radstream/ocr-tls/tls.crt")
    assert settings.tls_keyfile == Path("/etc/radstream/ocr-tls/tls.key")
    assert settings.engine_threads == 1, "as many engine threads as CPUs requested"
    assert settings.observability.health_host == "0.0.0.0"
    assert settings.observability.health_port == 8081
    assert not settings.reads_blob_refs, "images come in the call; ocr opens no store"
    tls = volume(of_kind(production, "Deployment")["ocr"], "listener-tls")["secret"]
    assert tls["secretName"] == "radstream-ocr-tls"


def test_deid_calls_the_ocr_service_by_its_dns_name_and_verifies_it(
    production: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, _ = environment(production, "deid")
    deid = of_kind(production, "Deployment")["deid"]

    client = settings_from(plain, OcrClientSettings, monkeypatch)
    assert client.target == f"rs-radstream-ocr.radiology.svc:{DEFAULT_GRPC_PORT}"
    assert client.tls and client.tls_ca_file == Path("/etc/radstream/ocr-ca/ca.crt")
    assert plain["RADSTREAM_DEID_OCR_ENGINE"] == REMOTE_OCR_ENGINE, "not in-process"
    ca = volume(deid, "ocr-ca")["secret"]
    assert ca["secretName"] == "radstream-ocr-tls"
    assert ca["items"] == [{"key": "ca.crt", "path": "ca.crt"}], "the CA only, never ocr's key"
    mounts = {m["name"]: m for m in container(deid)["volumeMounts"]}
    assert mounts["ocr-ca"]["mountPath"] == "/etc/radstream/ocr-ca"


def test_ocr_takes_calls_from_deid_pods_only_and_reaches_nothing(
    production: list[dict[str, Any]],
) -> None:
    policies = of_kind(production, "NetworkPolicy")
    spec = policies["ocr"]["spec"]

    assert selects(spec["podSelector"], pod_labels(production, "ocr"))
    health, grpc = spec["ingress"]
    assert health == {
        "ports": [{"port": "health", "protocol": "TCP"}],
        "from": PRODUCTION["networkPolicy"]["metricsFrom"],
    }
    assert grpc["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    [peer] = grpc["from"]
    assert set(peer) == {"podSelector"}, "this namespace's pods, no other namespace"
    assert selects(peer["podSelector"], pod_labels(production, "deid"))
    for other in ("ingest", "ocr"):
        assert not selects(peer["podSelector"], pod_labels(production, other)), other
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["egress"] == [], "egress denied: no DNS, no store, no Internet"


def test_deid_egress_opens_to_the_ocr_pods_grpc_port_only(
    production: list[dict[str, Any]],
) -> None:
    egress = of_kind(production, "NetworkPolicy")["deid"]["spec"]["egress"]

    to_ocr = [
        rule
        for rule in egress
        if any(
            selects(
                p.get("podSelector", {"matchLabels": {"x": "y"}}), pod_labels(production, "ocr")
            )
            for p in rule["to"]
        )
    ]
    assert len(to_ocr) == 1
    assert to_ocr[0]["ports"] == [{"port": DEFAULT_GRPC_PORT, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (
            merged(PRODUCTION, {"services": {"ocr": {"tls": {"secret": ""}}}}),
            r"services\.ocr\.tls\.secret is required: the gRPC port would take pixels with "
            r"burned-in PHI in clear text",
        ),
        (
            merged(
                WITH_KSERVE,
                {"networkPolicy": {"egress": {"triton": {"to": []}}}},
            ),
            r"networkPolicy\.egress\.triton\.to is required with engine kserve",
        ),
    ],
    ids=["gRPC without TLS", "Triton egress to anywhere"],
)
def test_an_open_ocr_is_refused_unless_it_says_insecure(
    values: dict[str, Any], reason: str
) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=f"{reason}.*insecure: true"):
        render(values)

    assert "ocr" in of_kind(render(merged(values, {"insecure": True})), "Deployment")


def test_an_insecure_release_speaks_plaintext_grpc_on_both_sides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = merged(WITH_OCR, {"insecure": True, "services": {"ocr": {"tls": {"secret": ""}}}})

    docs = render(values)

    server = settings_from(ocr_environment(docs), OcrSettings, monkeypatch)
    plain, _ = environment(docs, "deid")
    client = settings_from(plain, OcrClientSettings, monkeypatch)
    assert not server.tls and not client.tls, "one side on TLS and the other not: no call works"


def test_deid_given_the_service_settings_reads_pixels_through_the_ocr_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = merged(WITH_OCR, {"insecure": True, "services": {"ocr": {"tls": {"secret": ""}}}})
    plain, _ = environment(render(values), "deid")
    ocr_settings = {k: v for k, v in plain.items() if re.match("RADSTREAM_(DEID_)?OCR_", k)}

    engine = settings_from(ocr_settings, DeidSettings, monkeypatch).ocr()

    assert isinstance(engine, GrpcOcrEngine)
    assert engine.client.target == f"rs-radstream-ocr.radiology.svc:{DEFAULT_GRPC_PORT}"
    engine.client.close()


def test_mutual_tls_lets_in_only_callers_with_a_certificate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = merged(WITH_OCR, {"services": {"ocr": {"tls": {"clientSecret": "deid-ocr-client"}}}})

    docs = render(values)

    server = settings_from(ocr_environment(docs), OcrSettings, monkeypatch)
    assert server.tls_client_ca_file == Path("/etc/radstream/ocr-client-ca/ca.crt")
    client_ca = volume(of_kind(docs, "Deployment")["ocr"], "client-ca")["secret"]
    assert (client_ca["secretName"], client_ca["items"]) == (
        "deid-ocr-client",
        [{"key": "ca.crt", "path": "ca.crt"}],
    )
    plain, _ = environment(docs, "deid")
    client = settings_from(plain, OcrClientSettings, monkeypatch)
    assert client.tls_certfile == Path("/etc/radstream/ocr-client/tls.crt")
    assert client.tls_keyfile == Path("/etc/radstream/ocr-client/tls.key")
    assert volume(of_kind(docs, "Deployment")["deid"], "ocr-client")["secret"]["secretName"] == (
        "deid-ocr-client"
    )


def test_the_kserve_engine_reaches_dns_and_triton_only(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = render(WITH_KSERVE)

    egress = of_kind(docs, "NetworkPolicy")["ocr"]["spec"]["egress"]
    assert [rule["to"] for rule in egress] == [
        MINIMAL_DNS_PEERS,
        TRITON,
    ]
    assert egress[1]["ports"] == [{"port": 8001, "protocol": "TCP"}]
    plain = ocr_environment(docs)
    assert sorted(set(plain) - {name for name, _ in variables(OcrSettings)}) == []
    settings = settings_from(plain, OcrSettings, monkeypatch)
    assert settings.engine == "kserve"
    resources = container(of_kind(docs, "Deployment")["ocr"])["resources"]
    assert resources["requests"]["cpu"] == "250m", "the models run on Triton, not here"


MINIMAL_DNS_PEERS = [
    {"namespaceSelector": {}, "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
]


def test_reading_images_by_claim_check_opens_the_phi_store_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = merged(
        WITH_OCR, {"blob": {"s3CredentialsSecret": "s3"}, "services": {"ocr": {"phiStore": True}}}
    )

    docs = render(values)

    plain = ocr_environment(docs)
    assert plain["RADSTREAM_BLOB_PHI_URI"] == "s3://phi"
    assert settings_from(plain, OcrSettings, monkeypatch).reads_blob_refs
    assert "RADSTREAM_BLOB_RELEASE_URI" not in plain, "ocr never sees the release zone"
    deployment = of_kind(docs, "Deployment")["ocr"]
    files = {
        item["path"]
        for source in volume(deployment, "secret-settings")["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    assert files == {"RADSTREAM_BLOB_S3_ACCESS_KEY_ID", "RADSTREAM_BLOB_S3_SECRET_ACCESS_KEY"}
    egress = of_kind(docs, "NetworkPolicy")["ocr"]["spec"]["egress"]
    assert [rule["to"] for rule in egress] == [
        MINIMAL_DNS_PEERS,
        MINIMAL["networkPolicy"]["egress"]["objectStore"]["to"],
    ]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (
            merged(MINIMAL, {"services": {"deid": {"ocr": {"via": "service"}}}}),
            r"services\.deid\.ocr\.via is service, but services\.ocr\.enabled is false",
        ),
        (
            merged(WITH_OCR, {"services": {"ocr": {"engine": "kserve"}}}),
            r"services\.ocr\.kserve\.url is required with engine kserve",
        ),
        (
            merged(WITH_OCR, {"services": {"ocr": {"engine": "easyocr"}}}),
            r"services\.ocr\.engine easyocr needs services\.ocr\.image",
        ),
        (
            merged(
                WITH_OCR,
                {
                    "services": {"ocr": {"tls": {"secret": "", "clientSecret": "c"}}},
                    "insecure": True,
                },
            ),
            r"services\.ocr\.tls\.clientSecret \(mTLS\) needs services\.ocr\.tls\.secret",
        ),
    ],
    ids=[
        "deid calls an ocr that is off",
        "kserve without Triton",
        "easyocr without torch",
        "mTLS without TLS",
    ],
)
def test_an_ocr_that_cannot_work_does_not_render(values: dict[str, Any], reason: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=reason):
        render(values)


def test_easyocr_runs_its_own_image_with_more_memory_and_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = {"repository": "registry.local/radstream", "tag": "0.1.0-easyocr"}
    values = merged(WITH_OCR, {"services": {"ocr": {"engine": "easyocr", "image": image}}})

    docs = render(values)

    for doc in docs:
        if not doc["apiVersion"].startswith("monitoring.coreos.com/"):
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    ocr = container(of_kind(docs, "Deployment")["ocr"])
    assert ocr["image"] == "registry.local/radstream:0.1.0-easyocr"
    assert container(of_kind(docs, "Deployment")["deid"])["image"] == "radstream:0.1.0"
    rapid = container(of_kind(render(WITH_OCR), "Deployment")["ocr"])["resources"]
    assert quantity(ocr["resources"]["limits"]["memory"]) > quantity(rapid["limits"]["memory"]), (
        "torch and EasyOCR's models"
    )
    settings = settings_from(ocr_environment(docs), OcrSettings, monkeypatch)
    assert (settings.engine, settings.engine_threads) == ("easyocr", 2)


def test_resources_in_values_win_and_set_the_engine_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resources = {"requests": {"cpu": "2500m", "memory": "2Gi"}, "limits": {"memory": "4Gi"}}
    values = merged(WITH_OCR, {"services": {"ocr": {"resources": resources}}})

    docs = render(values)

    ocr = container(of_kind(docs, "Deployment")["ocr"])
    assert ocr["resources"]["limits"] == {"memory": "4Gi"}
    assert ocr["resources"]["requests"]["memory"] == "2Gi"
    assert settings_from(ocr_environment(docs), OcrSettings, monkeypatch).engine_threads == 3


def quantity(text: str) -> int:
    match = re.fullmatch(r"(\d+)(Mi|Gi)", text)
    assert match, text
    return int(match[1]) * 1024 ** {"Mi": 2, "Gi": 3}[match[2]]


def test_the_chart_offers_the_engines_the_service_knows() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    ocr = schema["properties"]["services"]["properties"]["ocr"]["properties"]

    served = set(ENGINE_NAMES) - {REMOTE_OCR_ENGINE}  # an ocr server does not call another
    assert set(ocr["engine"]["enum"]) == served
    assert set(ocr["resourcesByEngine"]["required"]) == served


def test_the_dashboard_and_the_alerts_watch_ocr_and_the_review_rate(
    production: list[dict[str, Any]],
) -> None:
    [configmap] = [
        doc
        for doc in of_kind(production, "ConfigMap").values()
        if doc["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    dashboard = json.loads(configmap["data"]["radstream.json"])
    charted = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in SELECTOR_NAMES.findall(target["expr"])
    }
    [rules] = of_kind(production, "PrometheusRule").values()
    alerts = {rule["alert"]: rule for group in rules["spec"]["groups"] for rule in group["rules"]}

    assert {
        "radstream_ocr_requests_total",
        "radstream_ocr_request_seconds_bucket",
        "radstream_ocr_regions_bucket",
        "radstream_ocr_confidence_bucket",
        "radstream_ocr_inflight",
        "radstream_deid_review_decisions_total",
        "radstream_deid_pixel_decisions_total",
        "radstream_deid_pixel_stage_seconds_bucket",
        "radstream_deid_pixel_boxes_total",
        "radstream_deid_pixel_risk_bucket",
        "radstream_deid_pixel_confidence_bucket",
    } <= charted
    failing = alerts["RadstreamOcrFailing"]["expr"]
    assert "radstream_ocr_requests_total" in failing
    assert 'code!~"OK|INVALID_ARGUMENT"' in failing, "a refused image is the caller's, not ocr's"
    assert failing.endswith("> 0.05")
    # The target: fewer than 10% of the instances with text sent to review.
    held, text_bearing = alerts["RadstreamReviewRateHigh"]["expr"].split(" / ")
    assert 'radstream_deid_pixel_decisions_total{namespace="radiology", decision="held"}' in held
    assert 'decision=~"text_kept|redacted|held"}' in text_bearing
    assert text_bearing.endswith("> 0.1")
    places = [(p["gridPos"]["y"], p["gridPos"]["x"]) for p in dashboard["panels"]]
    assert len(places) == len(set(places)), "no two panels in one place"
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


def test_the_image_installs_tesseract_and_the_engines_extras() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    runtime = dockerfile.rsplit("\nFROM ", 1)[1]
    listed = [
        line.strip()
        for line in (ROOT / "deploy" / "debian-packages.txt").read_text().splitlines()
        if line.strip().startswith("tesseract")
    ]
    [extras] = re.findall(
        r'pip install -c requirements/constraints\.txt "\.\[([a-z0-9,]+)\]"', dockerfile
    )

    assert listed == ["tesseract-ocr", "tesseract-ocr-eng"]
    for package in listed:
        assert re.search(rf"apt-get install [^&]*\b{package}\b", runtime), package
    assert {"ocr", "kserve"} <= set(extras.split(",")), "rapidocr, tesseract and kserve engines"
    assert "easyocr" not in extras.split(","), "torch only in the image built for it"
    assert "OCR_EXTRAS" in dockerfile
