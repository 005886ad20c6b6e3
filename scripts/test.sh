#!/usr/bin/env bash
# Installs prismgate with its test tools into .venv, then runs every check the project has:
# ruff, mypy --strict on src/, and the whole test suite. README and .ci/run both call this.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
# uv installs the same requirements in seconds where pip takes minutes (measured: 22 s
# against 183 s); pip stays the fallback.
if .venv/bin/python -m pip install --quiet --disable-pip-version-check uv; then
  .venv/bin/uv pip install --quiet --python .venv/bin/python -e '.[dev]'
else
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
fi
# The browser tests (tests/ui) drive Debian's Chromium, never a browser Playwright
# downloads. Without it they fail, saying so.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
      || echo "chromium could not be installed: the browser tests will fail" >&2
  else
    echo "chromium is missing (apt-get install chromium, as root): the browser tests will fail" >&2
  fi
fi
# The fleet tests (tests/fleet) put Debian's nginx in front of three gateways; they start
# it themselves, in the foreground, from a folder of their own. Without it they fail,
# saying so. (The package's own service is not used: a policy may start it on port 80.)
if ! command -v nginx >/dev/null 2>&1 && ! [ -x /usr/sbin/nginx ]; then
  if [ "$(id -u)" -eq 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx \
      || echo "nginx could not be installed: the fleet tests will fail" >&2
    service nginx stop >/dev/null 2>&1 || true
  else
    echo "nginx is missing (apt-get install nginx, as root): the fleet tests will fail" >&2
  fi
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# mypy (half a minute of one core) runs beside the tests, which mostly wait on sockets
# and subprocesses; the script fails if either does.
.venv/bin/mypy &
mypy=$!
# Two workers, one test file each at a time (a file's module fixtures are made once): the
# tests spend about half their time waiting on sockets and subprocesses, so two workers
# halve the wall time on a two-core machine (measured: 361 s serial, 176 s with two; a
# third worker saved only 13 % and made timing tests fail).
tests=0
.venv/bin/pytest -q -p no:cacheprovider -n 2 --dist loadfile "$@" || tests=$?
wait "$mypy"
exit "$tests"
