#!/usr/bin/env bash
# Benchmark: direct upstream vs prismgate (plain, and with keys, budgets and spend logging on)
# vs LiteLLM proxy vs Portkey gateway, side by side.
#
#   bench/run.sh            full run (about 11 minutes), writes bench/RESULTS.md and results.json
#   bench/run.sh --quick    smoke run (about 2 minutes), writes bench/.work/quick/
#   bench/run.sh --help     the runner's options
#
# Installs what it needs first (each step is skipped when already done):
#   apt:  nginx, libnginx-mod-http-echo (the 1 s delay), wrk, util-linux (taskset)
#   pip:  litellm[proxy] into bench/.venv-litellm   (LITELLM_SPEC overrides the requirement)
#   npm:  @portkey-ai/gateway into bench/.portkey  (PORTKEY_SPEC overrides the package spec)
# (a peer left out of --gateways is not installed). A peer that fails to install is
# reported as not available; the run goes on.
# Everything listens on and talks to 127.0.0.1 only. Every server is stopped on exit.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
WORK="$BENCH/.work"
PYTHON="${PRISMGATE_PYTHON:-$ROOT/.venv/bin/python}"
LITELLM_SPEC="${LITELLM_SPEC:-litellm[proxy]}"
PORTKEY_SPEC="${PORTKEY_SPEC:-@portkey-ai/gateway}"

log() { printf '[bench] %s\n' "$*" >&2; }

runner=""
cleanup() {
    if [[ -n "$runner" ]] && kill -0 "$runner" 2>/dev/null; then
        kill -TERM "$runner" 2>/dev/null || true
        wait "$runner" 2>/dev/null || true
    fi
    # The runner stops its servers itself; this catches what a killed runner left behind.
    # Each line of the file is the process group id of one server the runner started.
    if [[ -s "$WORK/pids" ]]; then
        while read -r group; do
            [[ "$group" =~ ^[0-9]+$ ]] && kill -KILL -- "-$group" 2>/dev/null || true
        done <"$WORK/pids"
    fi
    rm -f "$WORK/pids"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

case "${1:-}" in
-h | --help) exec "$PYTHON" "$BENCH/run.py" --help ;;
esac

install_system() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx)
    [[ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ]] || missing+=(libnginx-mod-http-echo)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v taskset >/dev/null || missing+=(util-linux)
    ((${#missing[@]})) || return 0
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    log "apt-get install ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

install_litellm() {
    [[ -x "$BENCH/.venv-litellm/bin/litellm" ]] && return 0
    log "installing $LITELLM_SPEC into bench/.venv-litellm (a few minutes)"
    python3 -m venv "$BENCH/.venv-litellm" &&
        "$BENCH/.venv-litellm/bin/pip" install -q --upgrade pip &&
        "$BENCH/.venv-litellm/bin/pip" install -q "$LITELLM_SPEC" ||
        log "WARNING: LiteLLM did not install; it will be reported as not available"
}

install_portkey() {
    [[ -f "$BENCH/.portkey/node_modules/@portkey-ai/gateway/build/start-server.js" ]] && return 0
    log "installing $PORTKEY_SPEC into bench/.portkey"
    mkdir -p "$BENCH/.portkey"
    [[ -f "$BENCH/.portkey/package.json" ]] ||
        echo '{"name": "prismgate-bench-portkey", "private": true}' >"$BENCH/.portkey/package.json"
    npm install --prefix "$BENCH/.portkey" --no-audit --no-fund --loglevel=error "$PORTKEY_SPEC" ||
        log "WARNING: Portkey did not install; it will be reported as not available"
}

# The peers are installed only when the run uses them (--gateways; by default it does).
gateways="prismgate,prismgate-keys,litellm,portkey"
previous=""
for arg in "$@"; do
    case "$arg" in
    --gateways=*) gateways="${arg#--gateways=}" ;;
    *) [[ "$previous" == --gateways ]] && gateways="$arg" ;;
    esac
    previous="$arg"
done
wants() { [[ ",$gateways," == *",$1,"* ]]; }

install_system
if wants litellm; then install_litellm; fi
if wants portkey; then install_portkey; fi
[[ -x "$PYTHON" ]] || { log "no Python at $PYTHON (set PRISMGATE_PYTHON)"; exit 1; }

# 1,000 connections through a gateway need more than the usual 1,024 descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

mkdir -p "$WORK"
# The runner pins itself to the load core (--load-cpu, 1) and the gateways to --gateway-cpu (0).
"$PYTHON" "$BENCH/run.py" "$@" &
runner=$!
wait "$runner"
