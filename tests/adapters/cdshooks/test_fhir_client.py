"""FhirClient: allowlist, addresses checked after resolution, the checked address is the one connected to.

The FHIR server is real (loopback); the DNS answers are given by a resolver passed in, which is how a
rebinding or a mixed answer is played without a DNS server."""

from __future__ import annotations

import ipaddress
import ssl
from datetime import UTC, datetime, timedelta

import pytest

from labservice.adapters.cdshooks.fhir_client import (
    FhirAccess,
    FhirFetchError,
    allowed_for,
    is_public,
    normalize_base_url,
    parse_fhir_servers,
)
from tests.adapters.cdshooks.build import FhirTestServer, synthea_server_data

PATIENT, OBSERVATIONS = synthea_server_data("Clemente_Kreiger")
PID = PATIENT["id"]


class Resolver:
    """DNS answers in turn (the last one repeats), counting the look-ups."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        return self.answers[min(len(self.asked), len(self.answers)) - 1]


@pytest.fixture
def server():
    with FhirTestServer([PATIENT], OBSERVATIONS).running() as running:
        yield running


def named(server: FhirTestServer, host: str = "fhir.hospital.test") -> str:
    return server.base_url.replace("127.0.0.1", host)


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("https://FHIR.Example.org:443/r4/", "https://fhir.example.org/r4"),
        ("http://fhir.example.org:80", "http://fhir.example.org"),
        ("http://[::1]:8080/fhir", "http://[::1]:8080/fhir"),
        ("http://10.1.2.3:8080/fhir", "http://10.1.2.3:8080/fhir"),
        ("ftp://fhir.example.org", None),
        ("http://u:p@fhir.example.org", None),
        ("http://x.org/fhir?a=1", None),
        ("http://x.org/fhir#top", None),
        ("fhir.example.org/r4", None),
        ("http://x.org:99999/", None),
    ],
)
def test_base_urls_are_compared_in_one_spelling(url, normalized):
    assert normalize_base_url(url) == normalized


def test_each_client_gets_its_own_servers_and_those_for_every_client():
    servers = parse_fhir_servers(
        {
            "api_key:lis": ["https://a.example/fhir"],
            "*": ["https://b.example/fhir"],
            "cds_client:https://ehr.example/": ["https://c.example/fhir/"],
        }
    )
    assert allowed_for(servers, ["api_key:lis"]) == {"https://a.example/fhir", "https://b.example/fhir"}
    assert allowed_for(servers, ["cds_client:https://ehr.example/"]) == {
        "https://b.example/fhir",
        "https://c.example/fhir",
    }
    assert allowed_for({}, ["api_key:lis"]) == frozenset()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("10.0.0.1", False),
        ("172.16.5.4", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("255.255.255.255", False),
        ("::ffff:127.0.0.1", False),
    ],
)
def test_what_counts_as_a_public_address(address, public):
    assert is_public(ipaddress.ip_address(address)) is public


def test_a_name_resolving_to_a_private_address_is_refused_before_any_connection(server):
    resolver = Resolver(["127.0.0.1"])
    access = FhirAccess(allowed=frozenset({named(server)}), resolver=resolver)
    with pytest.raises(FhirFetchError, match="non-public"):
        access.client(named(server), None).get(f"Patient/{PID}")
    assert server.requests == []


def test_every_address_is_checked_not_only_the_first(server):
    resolver = Resolver(["93.184.216.34", "169.254.169.254"])  # one public, one the cloud metadata service
    access = FhirAccess(allowed=frozenset({named(server)}), resolver=resolver)
    with pytest.raises(FhirFetchError, match=r"169\.254\.169\.254"):
        access.client(named(server), None).get(f"Patient/{PID}")


def test_an_ipv4_mapped_loopback_address_is_refused(server):
    access = FhirAccess(allowed=frozenset({named(server)}), resolver=Resolver(["::ffff:127.0.0.1"]))
    with pytest.raises(FhirFetchError, match="non-public"):
        access.client(named(server), None).get(f"Patient/{PID}")


def test_the_connection_goes_to_the_checked_address_under_the_urls_host_name(server):
    """Resolved once, checked, connected to: a later DNS answer (rebinding) is never used."""
    resolver = Resolver(["127.0.0.1"], ["169.254.169.254"])
    access = FhirAccess(
        allowed=frozenset({named(server)}), resolver=resolver, private_networks=(ipaddress.ip_network("127.0.0.0/8"),)
    )
    assert access.client(named(server), None).get(f"Patient/{PID}") == PATIENT
    assert len(resolver.asked) == 1
    assert server.requests[0]["path"] == f"/fhir/Patient/{PID}"
    assert server.requests[0]["host"] == named(server).split("/")[2]


def test_one_failure_ends_the_fetching_for_the_call(server):
    access = FhirAccess(allowed=frozenset())
    client = access.client(server.base_url, None)
    for _ in range(2):
        with pytest.raises(FhirFetchError, match="allowlist"):
            client.get(f"Patient/{PID}")
    assert server.requests == []


def test_the_reason_goes_to_the_log_without_the_token_or_the_patient(server):
    logged: list[str] = []
    access = FhirAccess(allowed=frozenset({server.base_url}), log=logged.append)
    with pytest.raises(FhirFetchError):
        access.client(server.base_url, "tok-secret").get("Patient/unknown-patient")
    assert logged == [
        f"CDS Hooks: fhirServer {server.base_url} not read: answered HTTP 404 (redirects are not followed)"
    ]


# --- https: the TLS name is the URL's host, though the connection goes to the checked address --------------


def certificate(name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for DNS name `name` and its key, PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


@pytest.fixture
def tls_server(tmp_path):
    """The loopback FHIR server behind TLS with a certificate for fhir.hospital.test; (server, its CA)."""
    cert, key = certificate("fhir.hospital.test")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server = FhirTestServer([PATIENT], OBSERVATIONS)
    server._server.socket = context.wrap_socket(server._server.socket, server_side=True)
    server.base_url = server.base_url.replace("http://", "https://")
    with server.running():
        yield server, cert


def test_https_checks_the_certificate_against_the_urls_host(tls_server):
    server, ca = tls_server
    url = named(server)
    access = FhirAccess(
        allowed=frozenset({url}),
        resolver=Resolver(["127.0.0.1"]),
        private_networks=(ipaddress.ip_network("127.0.0.1/32"),),
        tls=ssl.create_default_context(cadata=ca.decode()),
    )
    assert access.client(url, "tok").get(f"Patient/{PID}") == PATIENT
    assert server.requests[0]["authorization"] == "Bearer tok"


def test_https_refuses_a_certificate_for_another_name(tls_server):
    server, ca = tls_server
    url = named(server, "other.hospital.test")
    access = FhirAccess(
        allowed=frozenset({url}),
        resolver=Resolver(["127.0.0.1"]),
        private_networks=(ipaddress.ip_network("127.0.0.1/32"),),
        tls=ssl.create_default_context(cadata=ca.decode()),
    )
    with pytest.raises(FhirFetchError, match="could not connect"):
        access.client(url, "tok").get(f"Patient/{PID}")
    assert server.requests == []  # the token was never sent


def test_a_url_http_client_cannot_send_is_a_fetch_error_not_a_crash(server):
    url = server.base_url + "/f\u00fcr"  # allowlisted as written, but not ASCII on the request line
    access = FhirAccess(allowed=frozenset({url}))
    with pytest.raises(FhirFetchError, match="could not connect"):
        access.client(url, None).get(f"Patient/{PID}")
