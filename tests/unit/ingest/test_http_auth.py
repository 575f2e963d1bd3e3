"""Who may call the ingest HTTP endpoints: settings, bearer tokens, client certificates."""

from __future__ import annotations

import hashlib
import json
import logging

import pytest
from prometheus_client import CollectorRegistry

from radstream.common.errors import MisconfiguredError
from radstream.ingest.http_auth import (
    AuthenticationRefused,
    HttpAuthenticator,
    HttpSettings,
    client_cn,
    rfc4514_name,
    token_sha256,
)
from radstream.ingest.rejections import rejections

RIS_TOKEN = "synthetic-ris-token-0123456789abcdef"
PACS_TOKEN = "synthetic-pacs-token-fedcba9876543210"


def scope(*, authorization: str | None = None, tls_name: str | None = None) -> dict:
    headers = [(b"host", b"ingest")]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode("latin-1")))
    result: dict = {"type": "http", "headers": headers, "client": ("10.1.2.3", 50123)}
    if tls_name is not None:
        result["extensions"] = {"tls": {"client_cert_name": tls_name}}
    return result


def refused(registry: CollectorRegistry, reason: str) -> float:
    return (
        registry.get_sample_value(
            "radstream_ingest_refused_total", {"channel": "http", "reason": reason}
        )
        or 0.0
    )


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def bearer(registry: CollectorRegistry) -> HttpAuthenticator:
    return HttpAuthenticator(
        mode="bearer",
        rejections=rejections(registry),
        token_hashes={"ris": token_sha256(RIS_TOKEN), "pacs": token_sha256(PACS_TOKEN)},
    )


class TestSettings:
    def test_token_hashes_come_from_a_json_object_in_the_environment(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        digest = hashlib.sha256(RIS_TOKEN.encode()).hexdigest()
        monkeypatch.setenv("RADSTREAM_INGEST_HTTP_TOKEN_SHA256", json.dumps({"ris": digest}))
        monkeypatch.setenv("RADSTREAM_INGEST_HTTP_PORT", "0")
        settings = HttpSettings()
        assert settings.auth == "bearer"
        assert settings.token_sha256 == {"ris": digest}

    def test_bearer_without_tokens_is_valid_and_refuses_everyone(
        self, registry: CollectorRegistry
    ) -> None:
        settings = HttpSettings(auth="bearer")
        authenticator = HttpAuthenticator.from_settings(settings, rejections(registry))
        with pytest.raises(AuthenticationRefused):
            authenticator.authenticate(scope(authorization=f"Bearer {RIS_TOKEN}"))

    def test_a_plaintext_token_instead_of_its_hash_is_refused_without_echoing_it(self) -> None:
        with pytest.raises(MisconfiguredError) as caught:
            HttpSettings(token_sha256={"ris": RIS_TOKEN})
        assert RIS_TOKEN not in str(caught.value)

    def test_subject_names_must_be_plain_identifiers(self) -> None:
        with pytest.raises(MisconfiguredError, match="subject"):
            HttpSettings(token_sha256={"DOE^JANE": token_sha256(RIS_TOKEN)})

    def test_mtls_needs_server_certificate_and_client_ca(self) -> None:
        with pytest.raises(MisconfiguredError, match="CLIENT_CAFILE"):
            HttpSettings(auth="mtls")

    def test_a_disabled_server_is_not_checked(self) -> None:
        assert not HttpSettings(enabled=False, auth="mtls").enabled

    def test_open_mode_must_be_chosen_explicitly_and_needs_nothing_else(self) -> None:
        assert HttpSettings(auth="open").auth == "open"

    def test_allowed_client_cns_are_a_comma_list(self) -> None:
        settings = HttpSettings(auth="open", allowed_client_cns="ris-a, pacs-b")
        assert settings.allowed_client_cns == frozenset({"ris-a", "pacs-b"})


class TestBearer:
    def test_a_configured_token_authenticates_as_its_subject(
        self, bearer: HttpAuthenticator
    ) -> None:
        principal = bearer.authenticate(scope(authorization=f"Bearer {PACS_TOKEN}"))
        assert (principal.subject, principal.method, principal.address) == (
            "pacs",
            "bearer",
            "10.1.2.3",
        )

    def test_the_scheme_is_case_insensitive(self, bearer: HttpAuthenticator) -> None:
        assert bearer.authenticate(scope(authorization=f"bearer {RIS_TOKEN}")).subject == "ris"

    def test_no_credentials_get_a_401_challenge_without_an_error_code(
        self, bearer: HttpAuthenticator, registry: CollectorRegistry
    ) -> None:
        with pytest.raises(AuthenticationRefused) as caught:
            bearer.authenticate(scope())
        assert caught.value.status == 401
        assert caught.value.headers == {"WWW-Authenticate": 'Bearer realm="radstream-ingest"'}
        assert refused(registry, "missing_credentials") == 1

    def test_a_wrong_token_is_an_invalid_token_and_is_not_logged(
        self,
        bearer: HttpAuthenticator,
        registry: CollectorRegistry,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.DEBUG)
        with pytest.raises(AuthenticationRefused) as caught:
            bearer.authenticate(scope(authorization="Bearer wrong-token-123"))
        assert caught.value.status == 401
        assert 'error="invalid_token"' in caught.value.headers["WWW-Authenticate"]
        assert refused(registry, "invalid_token") == 1
        assert "wrong-token-123" not in caplog.text

    @pytest.mark.parametrize(
        "header", ["Basic cmlzOnNlY3JldA==", "Bearer", "Bearer two tokens", "Bearer caf\u00e9"]
    )
    def test_other_schemes_and_malformed_headers_are_invalid_requests(
        self, bearer: HttpAuthenticator, header: str
    ) -> None:
        with pytest.raises(AuthenticationRefused) as caught:
            bearer.authenticate(scope(authorization=header))
        assert caught.value.status == 401
        assert caught.value.reason == "malformed_authorization"


class TestClientCertificates:
    def authenticator(self, registry: CollectorRegistry, allowed: frozenset[str] = frozenset()):
        return HttpAuthenticator(
            mode="mtls", rejections=rejections(registry), allowed_client_cns=allowed
        )

    def test_the_certificate_cn_is_the_sender_identity(self, registry: CollectorRegistry) -> None:
        principal = self.authenticator(registry).authenticate(
            scope(tls_name="CN=ris-gateway,O=Synthetic Hospital,C=DE")
        )
        assert (principal.subject, principal.method) == ("ris-gateway", "mtls")

    def test_a_cn_outside_the_allowlist_is_forbidden(self, registry: CollectorRegistry) -> None:
        with pytest.raises(AuthenticationRefused) as caught:
            self.authenticator(registry, frozenset({"pacs"})).authenticate(
                scope(tls_name="CN=ris-gateway")
            )
        assert caught.value.status == 403
        assert refused(registry, "client_not_allowed") == 1

    def test_no_certificate_in_the_scope_is_unauthenticated(
        self, registry: CollectorRegistry
    ) -> None:
        with pytest.raises(AuthenticationRefused) as caught:
            self.authenticator(registry).authenticate(scope())
        assert caught.value.status == 401

    def test_a_certificate_without_cn_is_forbidden(self, registry: CollectorRegistry) -> None:
        with pytest.raises(AuthenticationRefused) as caught:
            self.authenticator(registry).authenticate(scope(tls_name="O=Synthetic,C=DE"))
        assert caught.value.status == 403

    def test_open_mode_lets_anyone_in_as_anonymous(self, registry: CollectorRegistry) -> None:
        principal = HttpAuthenticator(mode="open", rejections=rejections(registry)).authenticate(
            scope()
        )
        assert principal.subject == "anonymous"


class TestDistinguishedNames:
    def test_getpeercert_subjects_become_rfc4514_most_specific_first(self) -> None:
        subject = (
            (("countryName", "DE"),),
            (("organizationName", "Hospital, Inc"),),
            (("commonName", "ris+1"),),
        )
        assert rfc4514_name(subject) == r"CN=ris\+1,O=Hospital\, Inc,C=DE"

    @pytest.mark.parametrize(
        ("name", "cn"),
        [
            (r"CN=ris\+1,O=Hospital\, Inc,C=DE", "ris+1"),
            (r"cn=a\2Cb,O=x", "a,b"),
            ("O=x+CN=multi,C=DE", "multi"),
            ("2.5.4.3=oid-form", "oid-form"),
            ("O=no-cn", None),
        ],
    )
    def test_the_cn_is_read_back_unescaped(self, name: str, cn: str | None) -> None:
        assert client_cn(name) == cn

    def test_a_name_round_trips(self) -> None:
        subject = ((("commonName", ' lead "#" space '),),)
        assert client_cn(rfc4514_name(subject)) == ' lead "#" space '
