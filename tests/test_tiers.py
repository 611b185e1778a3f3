"""The test tiers themselves: which tests are `slow` (tests/conftest.py) and the Hypothesis profiles.

The rule is checked on the helpers it relies on: if a server helper stopped being recognised, its tests
would silently join the quick tier.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

import tests.security.test_sign_in_served as sign_in_served
from tests.adapters.cdshooks.build import FhirTestServer
from tests.conftest import starts_a_server
from tests.faults.servers import gunicorn
from tests.hypothesis_profiles import CI_EXAMPLES, chosen_profile, examples
from tests.security.audit_support import start_gunicorn
from tests.test_mllp import running_listener


@pytest.mark.parametrize(
    "helper",
    [gunicorn, start_gunicorn, running_listener, FhirTestServer],
    ids=["gunicorn", "start_gunicorn", "mllp_listener", "fhir_server"],
)
def test_every_server_helper_counts_as_starting_a_server(helper):
    assert starts_a_server(helper)


def test_a_helper_of_a_helper_is_followed():
    """test_sign_in_served's serve() only calls tests.faults.servers.gunicorn, which starts the process.

    (Named through its module: a test that names a server helper directly counts as starting a server.)"""
    assert starts_a_server(sign_in_served.serve)


def test_a_helper_imported_inside_the_test_is_followed():
    """As tests/middleware/test_audit_trail.py does for the MLLP listener (compiled from text here, so that this test
    itself names no server helper and stays in the quick tier)."""
    source = (
        "def audits_mllp(tmp_path):\n"
        "    from tests.test_mllp import running_listener\n"
        "    with running_listener(tmp_path):\n"
        "        pass\n"
    )
    namespace: dict[str, object] = {}
    exec(source, namespace)
    assert starts_a_server(namespace["audits_mllp"])


def test_an_in_process_test_does_not_count():
    def in_process(client):
        return client.get("/healthz")

    assert not starts_a_server(in_process)
    assert not starts_a_server(test_an_in_process_test_does_not_count)


def test_ci_runs_today_s_sizes_derandomized_with_the_blob():
    ci = settings.get_profile("ci")
    assert (ci.max_examples, ci.derandomize, ci.print_blob, ci.deadline) == (CI_EXAMPLES, True, True, None)
    assert [examples(n, ci.max_examples) for n in (40, 60, 150, 400)] == [40, 60, 150, 400]


def test_dev_is_a_quarter_random_and_at_least_ten_examples():
    dev = settings.get_profile("dev")
    assert (dev.max_examples, dev.derandomize) == (25, False)
    assert [examples(n, dev.max_examples) for n in (8, 40, 60, 150, 400)] == [8, 10, 15, 38, 100]


def test_the_profile_is_chosen_by_hypothesis_profile_and_dev_by_default():
    assert chosen_profile({}) == "dev"
    assert chosen_profile({"HYPOTHESIS_PROFILE": "ci"}) == "ci"
    with pytest.raises(ValueError, match="HYPOTHESIS_PROFILE='full'"):
        chosen_profile({"HYPOTHESIS_PROFILE": "full"})
