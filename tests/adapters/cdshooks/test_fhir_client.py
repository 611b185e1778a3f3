"""FhirClient: allowlist, addresses checked after resolution, the checked address is the one connected to.

The FHIR server is real (loopback); the DNS answers are given by a resolver passed in, which is how a
rebinding or a mixed answer is played without a DNS server."""

from __future__ import annotations

import ipaddress

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


@pytest.mark.parametrize(("url", "normalized"), [
    ("https://FHIR.Example.org:443/r4/", "https://fhir.example.org/r4"),
    ("http://fhir.example.org:80", "http://fhir.example.org"),
    ("http://[::1]:8080/fhir", "http://[::1]:8080/fhir"),
    ("http://10.1.2.3:8080/fhir", "http://10.1.2.3:8080/fhir"),
    ("ftp://fhir.example.org", None), ("http://u:p@fhir.example.org", None), ("http://x.org/fhir?a=1", None),
    ("http://x.org/fhir#top", None), ("fhir.example.org/r4", None), ("http://x.org:99999/", None),
])
def test_base_urls_are_compared_in_one_spelling(url, normalized):
    assert normalize_base_url(url) == normalized


def test_each_client_gets_its_own_servers_and_those_for_every_client():
    servers = parse_fhir_servers({"api_key:lis": ["https://a.example/fhir"], "*": ["https://b.example/fhir"],
                                  "cds_client:https://ehr.example/": ["https://c.example/fhir/"]})
    assert allowed_for(servers, ["api_key:lis"]) == {"https://a.example/fhir", "https://b.example/fhir"}
    assert allowed_for(servers, ["cds_client:https://ehr.example/"]) == {"https://b.example/fhir",
                                                                         "https://c.example/fhir"}
    assert allowed_for({}, ["api_key:lis"]) == frozenset()


@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("2001:4860:4860::8888", True),
    ("127.0.0.1", False), ("::1", False), ("10.0.0.1", False), ("172.16.5.4", False), ("192.168.1.1", False),
    ("169.254.169.254", False), ("fe80::1", False), ("fc00::1", False), ("100.64.0.1", False), ("0.0.0.0", False),
    ("224.0.0.1", False), ("255.255.255.255", False), ("::ffff:127.0.0.1", False),
])
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
    with pytest.raises(FhirFetchError, match="169.254.169.254"):
        access.client(named(server), None).get(f"Patient/{PID}")


def test_an_ipv4_mapped_loopback_address_is_refused(server):
    access = FhirAccess(allowed=frozenset({named(server)}), resolver=Resolver(["::ffff:127.0.0.1"]))
    with pytest.raises(FhirFetchError, match="non-public"):
        access.client(named(server), None).get(f"Patient/{PID}")


def test_the_connection_goes_to_the_checked_address_under_the_urls_host_name(server):
    """Resolved once, checked, connected to: a later DNS answer (rebinding) is never used."""
    resolver = Resolver(["127.0.0.1"], ["169.254.169.254"])
    access = FhirAccess(allowed=frozenset({named(server)}), resolver=resolver,
                        private_networks=(ipaddress.ip_network("127.0.0.0/8"),))
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
    assert logged == [f"CDS Hooks: fhirServer {server.base_url} not read: answered HTTP 404 (redirects are not "
                      "followed)"]
