"""The Helm chart ``helm/radstream``, rendered by Helm's own Go SDK (no helm binary, no cluster).

Every manifest must pass the Kubernetes API schemas, every ``RADSTREAM_*`` variable must be a
setting a service reads (and the settings a release renders must be accepted by the services'
own settings classes), secrets must come by reference, pods must run locked down, and a release
that cannot work must not render.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from radstream.common.bus import delivery_metrics
from radstream.common.bus_telemetry import BusTelemetry
from radstream.common.memory_budget import memory_budget_metrics
from radstream.common.service import SERVICES
from radstream.common.settings import DEFAULT_SECRETS_DIR, SECRETS_DIR_VARIABLE
from radstream.deid.config import DeidSettings
from radstream.deid.metrics import deid_metrics
from radstream.ingest.config import IngestSettings
from radstream.ingest.metrics import ingest_metrics
from radstream.ocr.metrics import ocr_metrics
from tests.settings_variables import settings_classes, variable_name, variables

CHART = Path(__file__).resolve().parents[3] / "helm" / "radstream"
PRODUCTION = yaml.safe_load((CHART / "ci" / "production-values.yaml").read_text())
KUBERNETES = "1.30.0"
# The services that consume and publish events; ocr, a gRPC server, has tests of its own
# (test_helm_ocr.py).
SERVICE_SETTINGS: dict[str, type[BaseSettings]] = {"ingest": IngestSettings, "deid": DeidSettings}

helm_python.disable_logging()


def merged(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``, nested mappings key by key (as Helm merges values)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


# What values.yaml leaves for the user to fill in; with it alone, the chart's defaults apply.
REQUIRED: dict[str, Any] = {
    "kafka": {
        "bootstrap": "kafka:9093",
        "saslPasswordSecret": {"name": "kafka", "key": "password"},
    },
    "blob": {"phiUri": "s3://phi", "releaseUri": "s3://release"},
    "services": {"deid": {"replicas": 1, "keySecret": {"name": "deid-key", "key": "key"}}},
}
KAFKA_PEERS = [{"ipBlock": {"cidr": "10.30.1.0/28"}}]
S3_PEERS = [{"ipBlock": {"cidr": "10.30.3.0/28"}}]
PG_PEERS = [{"ipBlock": {"cidr": "10.30.2.10/32"}}]
# The least a release needs: one replica each with its state on a claim (so no PostgreSQL),
# ingest on TLS from named senders, egress to the Kafka brokers and the object store.
MINIMAL: dict[str, Any] = merged(
    REQUIRED,
    {
        "networkPolicy": {
            "egress": {"kafka": {"to": KAFKA_PEERS}, "objectStore": {"to": S3_PEERS}}
        },
        "services": {
            "ingest": {
                "persistence": {"enabled": True},
                "allowedFrom": [{"ipBlock": {"cidr": "10.20.0.0/16"}}],
                "tls": {"secret": "ingest-tls"},
            },
            "deid": {"persistence": {"enabled": True}},
        },
    },
)
# The same, with the state in PostgreSQL instead of on claims.
WITH_POSTGRES: dict[str, Any] = merged(
    MINIMAL,
    {
        "delivery": {"idempotencyDsnSecret": {"name": "pg", "key": "guard-dsn"}},
        "networkPolicy": {"egress": {"postgres": {"to": PG_PEERS}}},
        "services": {
            "ingest": {
                "persistence": {"enabled": False},
                "assemblyDsnSecret": {"name": "pg", "key": "assembly-dsn"},
            },
            "deid": {"persistence": {"enabled": False}},
        },
    },
)


def render(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The release's manifests, as Helm renders them (NOTES.txt left out)."""
    chart = helm_python.Chart.load(str(CHART))
    try:
        rendered = chart.render(dict(values), name="rs", namespace="radiology")
    finally:
        chart.close()
    return [
        doc
        for path, text in rendered.items()
        if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """The documents of ``kind``, by their component (or name)."""
    found = {}
    for doc in docs:
        if doc["kind"] == kind:
            labels = doc["metadata"].get("labels", {})
            found[labels.get("app.kubernetes.io/component", doc["metadata"]["name"])] = doc
    return found


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return only


def settings_env(model: type[BaseSettings]) -> Iterator[tuple[str, bool]]:
    """Each environment variable a settings class reads, and whether it holds a secret."""
    for variable, field in variables(model):
        kind = field.annotation
        yield variable, SecretStr in getattr(kind, "__args__", ()) or kind is SecretStr


SETTINGS = dict(pair for model in SERVICE_SETTINGS.values() for pair in settings_env(model))


def environment(docs: list[dict[str, Any]], service: str) -> tuple[dict[str, str], set[str]]:
    """A service's settings: the plain variables, and the names of the secret files."""
    configmap = next(iter(of_kind(docs, "ConfigMap").values()))
    plain = dict(configmap["data"])
    deployment = of_kind(docs, "Deployment")[service]
    for entry in container(deployment)["env"]:
        assert "valueFrom" not in entry, f"{entry['name']}: a secret in the environment"
        plain[entry["name"]] = entry["value"]
    files = set()
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        if volume["name"] == "secret-settings":
            for source in volume["projected"]["sources"]:
                files.update(item["path"] for item in source["secret"]["items"])
    return plain, files


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return render(PRODUCTION)


def test_the_chart_lints_clean() -> None:
    report = helm_python.lint(str(CHART), PRODUCTION, strict=True)

    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] > 1] == [], "warnings or errors"


@pytest.mark.parametrize("values", [MINIMAL, PRODUCTION], ids=["minimal", "production"])
def test_every_manifest_passes_the_kubernetes_api_schemas(values: dict[str, Any]) -> None:
    docs = render(values)

    assert {doc["kind"] for doc in docs} >= {
        "ConfigMap",
        "ServiceAccount",
        "Deployment",
        "Service",
        "NetworkPolicy",
    }
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD the API schemas do not know; checked below
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)


def test_each_registered_service_runs_as_its_own_deployment_with_probes(
    production: list[dict[str, Any]],
) -> None:
    deployments = of_kind(production, "Deployment")

    assert set(deployments) == {spec.name for spec in SERVICES}
    for name, deployment in deployments.items():
        main = container(deployment)
        assert main["command"] == ["radstream", "run", name]
        assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        assert {"name": "health", "containerPort": 8081, "protocol": "TCP"} in main["ports"]
    assert deployments["ingest"]["spec"]["replicas"] == 2
    assert deployments["deid"]["spec"]["replicas"] == 3


def test_every_variable_the_chart_sets_is_a_setting_a_service_reads(
    production: list[dict[str, Any]],
) -> None:
    for service in SERVICE_SETTINGS:
        plain, from_secrets = environment(production, service)
        unknown = sorted(name for name in {*plain, *from_secrets} if name not in SETTINGS)
        assert unknown == [], f"{service}: no service reads {unknown}"


def test_secret_settings_come_as_files_from_secrets_and_never_sit_in_plain_values(
    production: list[dict[str, Any]],
) -> None:
    secrets = {name for name, secret in SETTINGS.items() if secret}
    for service in SERVICE_SETTINGS:
        plain, from_secrets = environment(production, service)
        assert not secrets & set(plain), f"{service}: secrets in plain values"
        mounts = container(of_kind(production, "Deployment")[service])["volumeMounts"]
        [mount] = [m for m in mounts if m["name"] == "secret-settings"]
        assert (mount["mountPath"], mount["readOnly"]) == (str(DEFAULT_SECRETS_DIR), True)
        assert "RADSTREAM_KAFKA_SASL_PASSWORD" in from_secrets
        assert "RADSTREAM_DELIVERY_IDEMPOTENCY_DSN" in from_secrets
        assert "RADSTREAM_BLOB_S3_SECRET_ACCESS_KEY" in from_secrets
    _, ingest_secrets = environment(production, "ingest")
    assert {"RADSTREAM_INGEST_ASSEMBLY_DSN", "RADSTREAM_INGEST_HTTP_TOKEN_SHA256"} <= ingest_secrets
    deid = of_kind(production, "Deployment")["deid"]
    [key_volume] = [
        v for v in deid["spec"]["template"]["spec"]["volumes"] if v["name"] == "deid-key"
    ]
    assert key_volume["secret"]["secretName"] == "radstream-deid-key"


# Placeholders for what the pods get from Secrets, in the shape each setting parses.
SECRET_PLACEHOLDERS = {
    "RADSTREAM_INGEST_HTTP_TOKEN_SHA256": json.dumps({"ris": "0" * 64}),
    "RADSTREAM_DELIVERY_IDEMPOTENCY_DSN": "postgresql://radstream@pg/radstream",
    "RADSTREAM_INGEST_ASSEMBLY_DSN": "postgresql://radstream@pg/radstream",
}


@pytest.mark.parametrize("service", sorted(SERVICE_SETTINGS))
def test_the_services_accept_the_settings_a_release_gives_them(
    production: list[dict[str, Any]],
    service: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    plain, from_secrets = environment(production, service)
    for name in list(SETTINGS):
        monkeypatch.delenv(name, raising=False)
    for name, value in plain.items():
        monkeypatch.setenv(name, value)
    for name in from_secrets:  # as the projected volume lays them out
        (tmp_path / name).write_text(SECRET_PLACEHOLDERS.get(name, "from-a-secret"))
    monkeypatch.setenv(SECRETS_DIR_VARIABLE, str(tmp_path))

    settings: Any = SERVICE_SETTINGS[service]()

    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.sasl_password.get_secret_value() == "from-a-secret"
    assert (
        settings.delivery.idempotency_dsn
        == SECRET_PLACEHOLDERS["RADSTREAM_DELIVERY_IDEMPOTENCY_DSN"]
    )
    assert settings.kafka.ssl_cafile == Path("/etc/radstream/kafka/ca.crt")
    assert settings.kafka.enable_idempotence is True
    assert settings.blob.phi_uri == "s3://radstream-phi/"
    assert settings.observability.health_host == "0.0.0.0"
    if service == "ingest":
        for listener in (settings.dicom, settings.http, settings.mllp):
            assert listener.enabled and listener.host == "0.0.0.0"
        assert settings.dicom.port == 11112
        assert settings.audit_sink == "phi-store"
    else:
        assert settings.key_file == Path("/etc/radstream/deid-key/key")
        assert [option.value for option in settings.options] == [
            "retain-longitudinal-modified-dates"
        ]


def test_pods_run_locked_down(production: list[dict[str, Any]]) -> None:
    for name, deployment in of_kind(production, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        main = container(deployment)
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert main["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert main["securityContext"]["allowPrivilegeEscalation"] is False, name
        assert main["securityContext"]["capabilities"]["drop"] == ["ALL"], name
        mounts = {m["mountPath"] for m in main["volumeMounts"]}
        assert {"/var/lib/radstream", "/tmp"} <= mounts, "writable places on a read-only root"


def test_network_policies_open_only_the_listeners_to_their_senders(
    production: list[dict[str, Any]],
) -> None:
    policies = of_kind(production, "NetworkPolicy")
    monitoring = PRODUCTION["networkPolicy"]["metricsFrom"]

    health, listeners = policies["ingest"]["spec"]["ingress"]
    assert health == {"ports": [{"port": "health", "protocol": "TCP"}], "from": monitoring}
    assert {p["port"] for p in listeners["ports"]} == {"dicom", "http", "mllp"}
    assert listeners["from"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    [deid_only] = policies["deid"]["spec"]["ingress"]
    assert deid_only["ports"] == [{"port": "health", "protocol": "TCP"}], "deid takes no calls"


def test_a_listener_switched_off_is_neither_published_nor_let_through() -> None:
    values = merged(MINIMAL, {"services": {"ingest": {"listeners": {"mllp": {"enabled": False}}}}})

    docs = render(values)

    plain, _ = environment(docs, "ingest")
    assert plain["RADSTREAM_INGEST_MLLP_ENABLED"] == "false"
    assert "RADSTREAM_INGEST_MLLP_HOST" not in plain
    ports = {p["name"] for p in of_kind(docs, "Service")["ingest"]["spec"]["ports"]}
    assert ports == {"health", "dicom", "http"}
    _, listeners = of_kind(docs, "NetworkPolicy")["ingest"]["spec"]["ingress"]
    assert {p["port"] for p in listeners["ports"]} == {"dicom", "http"}


def test_a_disabled_service_leaves_nothing_behind() -> None:
    docs = render(merged(MINIMAL, {"services": {"ingest": {"enabled": False}}}))

    for kind in ("Deployment", "Service", "NetworkPolicy"):
        assert set(of_kind(docs, kind)) == {"deid"}, kind


def test_a_values_setting_overrides_what_the_chart_sets() -> None:
    values = merged(
        MINIMAL, {"services": {"ingest": {"env": {"RADSTREAM_INGEST_AUDIT_SINK": "file"}}}}
    )

    plain, _ = environment(render(values), "ingest")

    assert plain["RADSTREAM_INGEST_AUDIT_SINK"] == "file"
    names = [e["name"] for e in container(of_kind(render(values), "Deployment")["ingest"])["env"]]
    assert len(names) == len(set(names)), "each variable once"


def test_replicas_disrupted_one_at_a_time_and_monitored(production: list[dict[str, Any]]) -> None:
    budgets = of_kind(production, "PodDisruptionBudget")
    monitors = of_kind(production, "ServiceMonitor")

    assert {name: b["spec"]["maxUnavailable"] for name, b in budgets.items()} == {
        "ingest": 1,
        "deid": 1,
        "ocr": 1,
    }
    assert set(monitors) == {"ingest", "deid", "ocr"}
    assert monitors["deid"]["spec"]["endpoints"] == [
        {"port": "health", "path": "/metrics", "interval": "30s"}
    ]
    assert of_kind(render(MINIMAL), "PodDisruptionBudget") == {}, "one replica: no budget"


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (merged(MINIMAL, {"kafka": {"bootstrap": ""}}), "kafka.bootstrap is required"),
        (
            merged(MINIMAL, {"blob": {"releaseUri": "s3://phi/"}}),
            "the release zone never shares storage with PHI",
        ),
        (
            merged(MINIMAL, {"blob": {"phiUri": "file:///data/phi"}}),
            "pods share no filesystem",
        ),
        (
            merged(MINIMAL, {"services": {"deid": {"keySecret": {"name": ""}}}}),
            "the pseudonymisation key",
        ),
        (
            merged(MINIMAL, {"services": {"deid": {"replicas": 2}}}),
            "replicas must share one idempotency guard",
        ),
        (
            merged(
                MINIMAL,
                {
                    "delivery": {"idempotencyDsnSecret": {"name": "pg"}},
                    "services": {"ingest": {"replicas": 2}},
                },
            ),
            "replicas must share one study assembly",
        ),
        (
            merged(MINIMAL, {"kafka": {"saslPasswordSecret": {"name": ""}}}),
            "with a SASL security protocol",
        ),
    ],
    ids=[
        "no bootstrap",
        "one store for both zones",
        "blobs on a pod's disk",
        "no deid key",
        "replicas without a shared guard",
        "ingest replicas without a shared assembly",
        "SASL without a password",
    ],
)
def test_a_release_that_cannot_work_does_not_render(values: dict[str, Any], reason: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=reason):
        render(values)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        (merged(MINIMAL, {"services": {"deid": {"replicas": -1}}}), "/services/deid/replicas"),
        (merged(MINIMAL, {"kafka": {"acks": "2"}}), "/kafka/acks"),
        (merged(MINIMAL, {"services": {"ingest": {"env": {"KAFKA_HOST": "x"}}}}), "KAFKA_HOST"),
        (merged(MINIMAL, {"services": {"restructure": {"enabled": True}}}), "restructure"),
    ],
    ids=["negative replicas", "unknown acks", "a variable not ours", "a service not ours"],
)
def test_values_outside_the_schema_are_refused(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError, match=where):
        render(values)


def exported_metrics() -> dict[str, tuple[str, ...]]:
    """Every series name the services expose (as Prometheus scrapes it), with its labels."""
    registry = CollectorRegistry()
    BusTelemetry(tracer_provider=None, registry=registry)
    delivery_metrics(registry)
    deid_metrics(registry)
    ingest_metrics(registry)
    memory_budget_metrics(registry)
    ocr_metrics(registry)
    types = dict(
        line.split()[2:4]
        for line in generate_latest(registry).decode().splitlines()
        if line.startswith("# TYPE ")
    )
    labels: dict[str, tuple[str, ...]] = {}
    for collector, names in registry._collector_to_names.items():
        found = tuple(
            getattr(collector, "labelnames", None) or getattr(collector, "_labelnames", ())
        )
        for name in names:
            base, _, suffix = name.rpartition("_")
            if name in types:
                labels[name] = found
            elif types.get(base) == "histogram" and suffix in {"bucket", "sum", "count"}:
                labels[name] = (*found, "le") if suffix == "bucket" else found
    return labels


SELECTOR = re.compile(r"(radstream_[a-z_]+)\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_]+)\s*(?:=~|!~|!=|=)")
SELECTOR_NAMES = re.compile(r"(radstream_[a-z_]+)\{")
GROUPED_BY = re.compile(r"by \(([^)]*)\) \((?:(?:increase|rate)\()?(radstream_[a-z_]+)")


def assert_asks_for_exported_series(what: str, expr: str) -> None:
    """Each metric ``expr`` selects is exported, with the labels it matches and groups by."""
    exported = EXPORTED
    selectors = SELECTOR.findall(expr)
    assert selectors, what
    for metric, matchers in selectors:
        assert metric in exported, f"{what}: no service exports {metric}"
        names = set(MATCHER.findall(matchers))
        assert names - {"namespace"} <= set(exported[metric]), f"{what}: {names}"
    for by, metric in GROUPED_BY.findall(expr):
        wanted = {label.strip() for label in by.split(",")}
        assert wanted <= set(exported[metric]), f"{what}: by {wanted}"


EXPORTED = exported_metrics()


def test_every_alert_asks_for_metrics_and_labels_the_services_export(
    production: list[dict[str, Any]],
) -> None:
    [rules] = of_kind(production, "PrometheusRule").values()
    alerts = [rule for group in rules["spec"]["groups"] for rule in group["rules"]]

    assert len(alerts) >= 8
    for alert in alerts:
        assert_asks_for_exported_series(alert["alert"], alert["expr"])
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}


def test_the_dashboard_charts_only_series_the_services_export(
    production: list[dict[str, Any]],
) -> None:
    [configmap] = [
        doc
        for doc in of_kind(production, "ConfigMap").values()
        if doc["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    dashboard = json.loads(configmap["data"]["radstream.json"])
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]

    assert dashboard["uid"] == "radstream"
    assert len(panels) >= 15
    charted = set()
    for panel in panels:
        for target in panel["targets"]:
            assert_asks_for_exported_series(panel["title"], target["expr"])
            charted.update(SELECTOR_NAMES.findall(target["expr"]))
    watched = {"radstream_events_consumed_total", "radstream_consumer_lag"}
    assert watched <= charted
    assert "grafana_dashboard" not in str(of_kind(render(MINIMAL), "ConfigMap")), "off by default"


def test_the_memory_budget_is_charted_and_alerted_on(production: list[dict[str, Any]]) -> None:
    [dashboard_map] = [
        doc
        for doc in of_kind(production, "ConfigMap").values()
        if doc["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    dashboard = json.loads(dashboard_map["data"]["radstream.json"])
    charted = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in SELECTOR_NAMES.findall(target["expr"])
    }
    [rules] = of_kind(production, "PrometheusRule").values()
    alerts = {rule["alert"]: rule for group in rules["spec"]["groups"] for rule in group["rules"]}

    budget = {name for name in EXPORTED if name.startswith("radstream_memory_budget_")}
    assert {
        "radstream_memory_budget_bytes",
        "radstream_memory_budget_reserved_bytes",
        "radstream_memory_budget_waiting",
        "radstream_memory_budget_wait_seconds_bucket",
        "radstream_memory_budget_refusals_total",
    } <= charted & budget
    assert "> 10" in alerts["RadstreamMemoryWaitsLong"]["expr"]
    assert alerts["RadstreamMemoryWaitsLong"]["for"] == "10m"
    assert "radstream_memory_budget_refusals_total" in alerts["RadstreamRefusedForMemory"]["expr"]


def test_every_resource_names_the_release_namespace_and_the_image_is_pinned_by_digest(
    production: list[dict[str, Any]],
) -> None:
    assert {doc["metadata"]["namespace"] for doc in production} == {"radiology"}
    digest = PRODUCTION["image"]["digest"]
    for deployment in of_kind(production, "Deployment").values():
        assert container(deployment)["image"] == f"{PRODUCTION['image']['repository']}@{digest}"
    [minimal] = {container(d)["image"] for d in of_kind(render(MINIMAL), "Deployment").values()}
    assert minimal == "radstream:0.1.0", "by the chart's appVersion without a digest"


def test_ingest_published_outside_the_cluster_keeps_the_senders_address(
    production: list[dict[str, Any]],
) -> None:
    ingest = of_kind(production, "Service")["ingest"]["spec"]

    assert (ingest["type"], ingest["externalTrafficPolicy"]) == ("LoadBalancer", "Local")
    assert "externalTrafficPolicy" not in of_kind(render(MINIMAL), "Service")["ingest"]["spec"]


def test_the_chart_knows_every_secret_setting_and_refuses_one_in_plain_values() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    [listed] = re.findall(r'define "radstream.secretSettings" -\}\}\n([^{]+)\{\{', helpers)

    assert set(listed.split()) == {name for name, secret in SETTINGS.items() if secret}
    for variable in listed.split():
        values = merged(MINIMAL, {"services": {"ingest": {"env": {variable: "oops"}}}})
        with pytest.raises(helm_python.HelmRenderError, match=f"sets {variable}, a secret"):
            render(values)


def volume(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == name]
    return found


def test_the_default_release_is_refused_until_the_study_assembly_is_durable() -> None:
    with pytest.raises(
        helm_python.HelmRenderError,
        match=r"study assembly in SQLite on an emptyDir.*services\.ingest\.assemblyDsnSecret "
        r"\(PostgreSQL\) or services\.ingest\.persistence\.enabled",
    ):
        render(REQUIRED)


def test_an_idempotency_store_on_an_emptydir_is_refused_too() -> None:
    values = merged(REQUIRED, {"services": {"ingest": {"persistence": {"enabled": True}}}})

    with pytest.raises(
        helm_python.HelmRenderError,
        match=r"services\.deid would keep its idempotency store in SQLite on an emptyDir.*"
        r"delivery\.idempotencyDsnSecret \(PostgreSQL\) or services\.deid\.persistence\.enabled",
    ):
        render(values)


@pytest.mark.parametrize("values", [MINIMAL, WITH_POSTGRES], ids=["claims", "postgres"])
def test_each_durable_release_renders_and_passes_the_schemas(values: dict[str, Any]) -> None:
    docs = render(values)

    for doc in docs:
        if not doc["apiVersion"].startswith("monitoring.coreos.com/"):
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    claims = of_kind(docs, "PersistentVolumeClaim")
    for name, deployment in of_kind(docs, "Deployment").items():
        work = volume(deployment, "work")
        if values is MINIMAL:
            claim = work["persistentVolumeClaim"]["claimName"]
            assert claims[name]["metadata"]["name"] == claim == f"rs-radstream-{name}-state"
            assert claims[name]["spec"]["accessModes"] == ["ReadWriteOnce"]
            assert deployment["spec"]["strategy"] == {"type": "Recreate"}, "one claim, one pod"
        else:
            assert work == {"name": "work", "emptyDir": {}}
            assert claims == {}
    if values is WITH_POSTGRES:
        _, ingest_secrets = environment(docs, "ingest")
        assert "RADSTREAM_INGEST_ASSEMBLY_DSN" in ingest_secrets


def test_a_claim_that_exists_is_used_and_not_created() -> None:
    values = merged(
        MINIMAL, {"services": {"ingest": {"persistence": {"existingClaim": "ingest-state"}}}}
    )

    docs = render(values)

    work = volume(of_kind(docs, "Deployment")["ingest"], "work")
    assert work["persistentVolumeClaim"]["claimName"] == "ingest-state"
    assert set(of_kind(docs, "PersistentVolumeClaim")) == {"deid"}


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (
            merged(
                WITH_POSTGRES,
                {"services": {"ingest": {"persistence": {"enabled": True}, "replicas": 2}}},
            ),
            r"services\.ingest\.persistence is one ReadWriteOnce claim, for one replica",
        ),
        (
            merged(
                WITH_POSTGRES,
                {"services": {"ingest": {"env": {"RADSTREAM_INGEST_PACS_MODE": "pull"}}}},
            ),
            r"place in the PACS's changes \(pull mode\) in SQLite on an emptyDir",
        ),
    ],
    ids=["a claim shared by replicas", "a pull cursor on an emptyDir"],
)
def test_state_a_pod_would_lose_is_refused(values: dict[str, Any], reason: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=reason):
        render(values)


def test_a_pull_cursor_in_postgresql_is_durable() -> None:
    values = merged(
        WITH_POSTGRES,
        {
            "services": {
                "ingest": {
                    "env": {"RADSTREAM_INGEST_PACS_MODE": "pull"},
                    "secretSettings": {
                        "RADSTREAM_INGEST_PACS_CURSOR_DSN": {"name": "pg", "key": "cursor-dsn"}
                    },
                }
            }
        },
    )

    _, secrets = environment(render(values), "ingest")

    assert "RADSTREAM_INGEST_PACS_CURSOR_DSN" in secrets


OPEN_RELEASES = [
    (
        merged(PRODUCTION, {"services": {"ingest": {"allowedFrom": []}}}),
        r"services\.ingest\.allowedFrom is required",
    ),
    (
        merged(PRODUCTION, {"services": {"ingest": {"tls": {"secret": ""}}}}),
        r"services\.ingest\.tls\.secret is required: the dicom listener would take PHI in clear",
    ),
    (
        merged(PRODUCTION, {"kafka": {"securityProtocol": "SASL_PLAINTEXT"}}),
        r"kafka\.securityProtocol must be SSL or SASL_SSL",
    ),
    (
        merged(PRODUCTION, {"blob": {"s3EndpointUrl": "http://s3.radiology.hospital.local"}}),
        r"blob\.s3EndpointUrl must be https://",
    ),
    (
        merged(PRODUCTION, {"networkPolicy": {"enabled": False}}),
        r"networkPolicy\.enabled is required",
    ),
    (
        merged(PRODUCTION, {"networkPolicy": {"egress": {"kafka": {"to": []}}}}),
        r"networkPolicy\.egress\.kafka\.to is required",
    ),
    (
        merged(PRODUCTION, {"networkPolicy": {"egress": {"postgres": {"to": []}}}}),
        r"networkPolicy\.egress\.postgres\.to is required with a PostgreSQL DSN",
    ),
]
OPEN_IDS = [
    "no allowedFrom",
    "listeners without TLS",
    "Kafka without TLS",
    "S3 without TLS",
    "no NetworkPolicies",
    "Kafka egress to anywhere",
    "PostgreSQL egress to anywhere",
]


@pytest.mark.parametrize(("values", "reason"), OPEN_RELEASES, ids=OPEN_IDS)
def test_an_open_release_is_refused_unless_it_says_insecure(
    values: dict[str, Any], reason: str
) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=f"{reason}.*insecure: true"):
        render(values)

    assert of_kind(render(merged(values, {"insecure": True})), "Deployment")


def test_tls_from_one_secret_covers_every_enabled_listener(
    production: list[dict[str, Any]],
) -> None:
    plain, _ = environment(production, "ingest")
    ingest = of_kind(production, "Deployment")["ingest"]

    for listener in ("DICOM", "HTTP", "MLLP"):
        assert plain[f"RADSTREAM_INGEST_{listener}_TLS_CERTFILE"] == (
            "/etc/radstream/ingest-tls/tls.crt"
        )
        assert plain[f"RADSTREAM_INGEST_{listener}_TLS_KEYFILE"] == (
            "/etc/radstream/ingest-tls/tls.key"
        )
    assert volume(ingest, "listener-tls")["secret"]["secretName"] == "radstream-ingest-tls"
    mounts = {m["name"]: m for m in container(ingest)["volumeMounts"]}
    assert mounts["listener-tls"]["mountPath"] == "/etc/radstream/ingest-tls"


def test_phi_zone_egress_is_denied_but_to_the_listed_destinations(
    production: list[dict[str, Any]],
) -> None:
    policies = of_kind(production, "NetworkPolicy")
    egress = PRODUCTION["networkPolicy"]["egress"]

    assert set(policies) == {"ingest", "deid", "ocr"}
    for name in SERVICE_SETTINGS:
        spec = policies[name]["spec"]
        assert "Egress" in spec["policyTypes"], f"{name}: egress not denied by default"
        peers = [rule.get("to") for rule in spec["egress"]]
        assert None not in peers, f"{name}: a rule open to any address"
        expected = [
            egress["kafka"]["to"],
            egress["postgres"]["to"],
            egress["objectStore"]["to"],
        ]
        for destination in expected:
            assert destination in peers, name
        dns = [rule for rule in spec["egress"] if {"port": 53, "protocol": "UDP"} in rule["ports"]]
        assert len(dns) == 1, f"{name}: DNS"
        # deid calls the ocr service (via: service); ingest has no PACS configured
        assert len(spec["egress"]) == {"ingest": 4, "deid": 5}[name], f"{name}: nothing else"


def test_the_pacs_destinations_are_ingests_only() -> None:
    pacs = [{"ipBlock": {"cidr": "10.40.0.5/32"}}]
    values = merged(
        MINIMAL,
        {
            "networkPolicy": {
                "egress": {"pacs": {"to": pacs, "ports": [{"port": 8042, "protocol": "TCP"}]}}
            }
        },
    )

    policies = of_kind(render(values), "NetworkPolicy")

    assert pacs in [rule.get("to") for rule in policies["ingest"]["spec"]["egress"]]
    assert pacs not in [rule.get("to") for rule in policies["deid"]["spec"]["egress"]]


def secret_file_only_settings(model: type[BaseSettings]) -> Iterator[str]:
    """The variables a settings class takes with a password or token only from a file."""
    for each in settings_classes(model):
        for name in getattr(each, "secret_file_only", {}):
            yield variable_name(each, name)


def test_the_chart_knows_every_secret_file_only_setting() -> None:
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    [listed] = re.findall(r'define "radstream.secretFileOnly" -\}\}\n([^{]+)\{\{', helpers)

    in_code = {v for model in SERVICE_SETTINGS.values() for v in secret_file_only_settings(model)}
    assert set(listed.split()) == in_code


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RADSTREAM_DELIVERY_IDEMPOTENCY_DSN", "postgresql://rs:synthetic-pw@pg/radstream"),
        ("RADSTREAM_INGEST_ASSEMBLY_DSN", "host=pg user=rs password=synthetic-pw"),
        (
            "RADSTREAM_INGEST_PACS_EXPORT_TARGETS",
            json.dumps([{"name": "r", "transport": "stow-rs", "bearer_token": "synthetic"}]),
        ),
    ],
)
def test_a_password_or_token_in_plain_env_is_refused(variable: str, value: str) -> None:
    values = merged(MINIMAL, {"services": {"ingest": {"env": {variable: value}}}})

    with pytest.raises(
        helm_python.HelmRenderError, match=f"sets {variable} with a password or token"
    ):
        render(values)


def test_a_dsn_without_a_password_may_be_plain() -> None:
    dsn = "postgresql://rs@pg/radstream?sslmode=verify-full"
    values = merged(
        MINIMAL, {"services": {"ingest": {"env": {"RADSTREAM_INGEST_PACS_CURSOR_DSN": dsn}}}}
    )

    plain, _ = environment(render(values), "ingest")

    assert plain["RADSTREAM_INGEST_PACS_CURSOR_DSN"] == dsn


SPOOL_MOUNT = "/var/spool/radstream"
QUANTITY = re.compile(r"^(\d+)(Mi|Gi)$")


def quantity_bytes(text: str) -> int:
    """A Kubernetes memory or storage quantity in Mi or Gi, in bytes."""
    match = QUANTITY.match(text)
    assert match, text
    return int(match[1]) * 1024 ** {"Mi": 2, "Gi": 3}[match[2]]


@pytest.mark.parametrize(("service", "copies"), [("ingest", 2), ("deid", 5)])
def test_the_default_memory_limits_accept_instances_of_a_gib(
    service: str, copies: int, tmp_path: Path
) -> None:
    from radstream.common.memory_budget import MemorySettings, plan_memory
    from radstream.deid.config import DEID_STAGE_COPIES
    from radstream.ingest.config import INGEST_COPIES

    assert {"ingest": INGEST_COPIES, "deid": DEID_STAGE_COPIES}[service] == copies
    limit = container(of_kind(render(MINIMAL), "Deployment")[service])["resources"]["limits"]
    (tmp_path / "memory.max").write_text(str(quantity_bytes(limit["memory"])))

    plan = plan_memory(MemorySettings(), copies=copies, cgroup_root=tmp_path)

    assert plan.max_instance_bytes >= 1024**3, "an enhanced multi-frame CT, a slide's level"


@pytest.mark.parametrize("values", [MINIMAL, PRODUCTION], ids=["minimal", "production"])
def test_the_spool_directory_is_a_sized_disk_volume_of_its_own(values: dict[str, Any]) -> None:
    docs = render(values)

    for service in SERVICE_SETTINGS:  # ocr takes its images in the call and spools nothing
        deployment = of_kind(docs, "Deployment")[service]
        plain, _ = environment(docs, service)
        assert plain["RADSTREAM_MEMORY_SPOOL_DIR"] == SPOOL_MOUNT, service
        pod = deployment["spec"]["template"]["spec"]
        [mount] = [
            m for m in container(deployment)["volumeMounts"] if m["mountPath"] == SPOOL_MOUNT
        ]
        [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert "medium" not in volume["emptyDir"], f"{service}: spooled bytes would be memory"
        assert quantity_bytes(volume["emptyDir"]["sizeLimit"]) >= 4 * 1024**3, service
    tmp = {v["name"]: v for v in pod["volumes"]}["tmp"]
    assert tmp["emptyDir"]["medium"] == "Memory", "/tmp stays small and in memory"


def test_the_spool_size_is_a_value() -> None:
    values = merged(MINIMAL, {"services": {"ingest": {"spool": {"sizeLimit": "64Gi"}}}})

    deployment = of_kind(render(values), "Deployment")["ingest"]

    [spool] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "spool"]
    assert spool["emptyDir"] == {"sizeLimit": "64Gi"}


def ephemeral_request(deployment: dict[str, Any]) -> int:
    """The disk a container asks the scheduler to reserve, in bytes."""
    return quantity_bytes(container(deployment)["resources"]["requests"]["ephemeral-storage"])


@pytest.mark.parametrize("values", [MINIMAL, PRODUCTION], ids=["minimal", "production"])
def test_each_pod_requests_the_disk_its_spool_may_fill(values: dict[str, Any]) -> None:
    deployments = of_kind(render(values), "Deployment")
    for service in SERVICE_SETTINGS:
        deployment = deployments[service]
        spool = volume(deployment, "spool")["emptyDir"]["sizeLimit"]

        assert ephemeral_request(deployment) > quantity_bytes(spool), f"{service}: and logs"


def test_a_larger_spool_requests_more_disk() -> None:
    values = merged(MINIMAL, {"services": {"ingest": {"spool": {"sizeLimit": "64Gi"}}}})

    deployment = of_kind(render(values), "Deployment")["ingest"]

    assert ephemeral_request(deployment) > 64 * 1024**3


def test_an_ephemeral_storage_request_in_values_is_kept() -> None:
    requests = {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "40Gi"}
    values = merged(MINIMAL, {"services": {"deid": {"resources": {"requests": requests}}}})

    deployment = of_kind(render(values), "Deployment")["deid"]

    assert container(deployment)["resources"]["requests"] == requests


@pytest.mark.parametrize(
    "sink",
    [{"RADSTREAM_INGEST_AUDIT_SINK": "file"}, {"RADSTREAM_INGEST_AUDIT_SINK": None}],
    ids=["file", "the services' default"],
)
def test_a_receipt_audit_file_on_an_emptydir_is_refused(sink: dict[str, Any]) -> None:
    values = merged(WITH_POSTGRES, {"services": {"ingest": {"env": sink}}})

    with pytest.raises(
        helm_python.HelmRenderError,
        match=r"receipt audit in a file on an emptyDir.*services\.ingest\.persistence\.enabled.*"
        r"RADSTREAM_INGEST_AUDIT_SINK=phi-store",
    ):
        render(values)


@pytest.mark.parametrize(
    "path", ["/var/spool/radstream/receipts.jsonl", "../../../tmp/receipts.jsonl"]
)
def test_a_receipt_audit_file_outside_the_claim_is_refused(path: str) -> None:
    env = {"RADSTREAM_INGEST_AUDIT_SINK": "file", "RADSTREAM_INGEST_AUDIT_PATH": path}
    values = merged(MINIMAL, {"services": {"ingest": {"env": env}}})

    with pytest.raises(
        helm_python.HelmRenderError, match=r"RADSTREAM_INGEST_AUDIT_PATH.*/var/lib/radstream"
    ):
        render(values)


@pytest.mark.parametrize(
    "path", [None, "audit/receipts.jsonl", "/var/lib/radstream/audit/receipts.jsonl"]
)
def test_a_receipt_audit_file_on_ingests_claim_renders(path: str | None) -> None:
    env = {"RADSTREAM_INGEST_AUDIT_SINK": "file"}
    if path:
        env["RADSTREAM_INGEST_AUDIT_PATH"] = path
    values = merged(MINIMAL, {"services": {"ingest": {"env": env}}})

    docs = render(values)

    plain, _ = environment(docs, "ingest")
    assert plain["RADSTREAM_INGEST_AUDIT_SINK"] == "file"
    work = volume(of_kind(docs, "Deployment")["ingest"], "work")
    assert "persistentVolumeClaim" in work, "the audit file outlives the pod"


def test_the_research_pacs_destinations_are_ingests_only() -> None:
    research = [{"ipBlock": {"cidr": "10.50.0.7/32"}}]
    ports = [{"port": 11112, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]
    values = merged(
        MINIMAL, {"networkPolicy": {"egress": {"researchPacs": {"to": research, "ports": ports}}}}
    )

    policies = of_kind(render(values), "NetworkPolicy")

    assert {"to": research, "ports": ports} in policies["ingest"]["spec"]["egress"]
    assert research not in [rule.get("to") for rule in policies["deid"]["spec"]["egress"]]
