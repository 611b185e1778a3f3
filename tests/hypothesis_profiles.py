"""Hypothesis profiles: `dev` (the default: small and random) and `ci` (full size and reproducible).

`HYPOTHESIS_PROFILE=ci` (set by .ci/run for the test command) or `pytest --hypothesis-profile=ci` picks the
full one; tests/conftest.py registers both and loads the chosen one before any test module is imported.

- `ci` runs every property at the size it had before the profiles (Hypothesis' default of 100 examples, and
  each explicit `max_examples` as written), derandomized so that a CI run is reproducible and a random seed
  cannot block a landing, and prints the blob that replays a failure.
- `dev` runs a quarter of that with a random seed, so a local run stays quick and still explores.

A test that sets its own size writes `@settings(max_examples=examples(150))`: 150 under `ci`, a quarter of
it (at least MIN_EXAMPLES) under `dev`. Neither profile has a deadline: a property's time on a shared,
loaded machine says nothing about its correctness (timing is measured only by bench/).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from hypothesis import settings

CI_EXAMPLES = 100  # Hypothesis' default: what a property without its own size ran before the profiles
DEV_FRACTION = 4  # dev runs 1/DEV_FRACTION of the ci size
MIN_EXAMPLES = 10  # below this a dev run of a property hardly explores
PROFILES = ("dev", "ci")


def register_profiles() -> None:
    settings.register_profile("ci", max_examples=CI_EXAMPLES, derandomize=True, print_blob=True, deadline=None)
    settings.register_profile("dev", max_examples=CI_EXAMPLES // DEV_FRACTION, derandomize=False, deadline=None)


def chosen_profile(environ: Mapping[str, str] = os.environ) -> str:
    """The profile named by HYPOTHESIS_PROFILE, `dev` when unset; an unknown name is an error, not a silent dev."""
    name = environ.get("HYPOTHESIS_PROFILE", "dev")
    if name not in PROFILES:
        raise ValueError(f"HYPOTHESIS_PROFILE={name!r}: expected one of {', '.join(PROFILES)}")
    return name


def examples(n: int, profile_examples: int | None = None) -> int:
    """A test's own `max_examples`, scaled with the loaded profile: n under `ci`, n/4 (at least 10) under `dev`.

    `profile_examples` is the profile's max_examples, by default that of the loaded profile."""
    current = settings.default.max_examples if profile_examples is None else profile_examples
    scaled = math.ceil(n * current / CI_EXAMPLES)
    return scaled if scaled >= n else min(n, max(MIN_EXAMPLES, scaled))
