#!/usr/bin/env bash
# Installs prismgate with its test tools into .venv, then runs every check the project has:
# ruff, mypy --strict on src/, and the whole test suite. README and .ci/run both call this.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/pytest -q -p no:cacheprovider "$@"
