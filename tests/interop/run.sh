#!/usr/bin/env bash
# Live interop tests against Dino 0.4.2:   bash tests/interop/run.sh [pytest args...]
#
# As root on Debian 12 (what CI runs on):
#  1. installs the lab's packages with apt, if missing (dino-im, xvfb, xdotool, prosody, ...);
#  2. finds a Python with jet-trio and pytest: $PYTHON, else the active virtualenv, else .venv
#     (created and filled with the project and plugins/* if it does not exist, as .ci/run does);
#  3. creates the network namespace $JET_TRIO_INTEROP_NS (default jettrio-interop): only lo, a
#     default route over lo (GLib then reports "online"; Dino does not connect otherwise), a
#     resolv.conf pointing at 127.0.0.1 (nothing resolves outside) and its own copy of /etc/ssl,
#     which `ip netns exec` mounts over /etc/ssl and to which the tests add their throw-away CA;
#  4. runs `pytest -m 'interop and not netns' tests/interop` inside it: the session fixture
#     starts Prosody (127.0.0.1:5222, proxy65 :5000), Xvfb and Dino, and stops them all at the end;
#  5. deletes the namespace and /etc/netns/<ns> again;
#  6. runs `pytest -m 'interop and netns' tests/interop` here, outside that namespace: the
#     multi-host test (test_dino_multihost.py) builds namespaces of its own (prefix n4d: Dino on
#     one, jet-trio on another, the server on a third) and removes them again.
# All traffic stays on the namespaces' own addresses. JET_TRIO_INTEROP_DIR=<dir> keeps the lab's files
# (Prosody log with every stanza, Dino's --print-xmpp output and profile) for inspection.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
NS=${JET_TRIO_INTEROP_NS:-jettrio-interop}
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

if [ "$(id -u)" != 0 ]; then
    echo "run.sh: needs root (network namespace, /etc/netns)" >&2
    exit 2
fi

# --- packages -----------------------------------------------------------------------------------
need=()
for pair in dino-im:dino-im Xvfb:xvfb xdotool:xdotool dbus-run-session:dbus-daemon \
    gdbus:libglib2.0-bin prosody:prosody ip:iproute2 nft:nftables; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
dpkg -s lua-unbound >/dev/null 2>&1 || need+=(lua-unbound)
if [ "${#need[@]}" -gt 0 ]; then
    echo "run.sh: installing ${need[*]}"
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${need[@]}" ca-certificates </dev/null
    # Where systemd runs, the prosody package starts a system-wide server; the tests never use it
    # (they run their own inside the namespace), so stop it.
    if [ -d /run/systemd/system ]; then systemctl stop prosody 2>/dev/null || true; fi
fi
echo "dino-im: $(dpkg-query -W -f='${Version}' dino-im 2>/dev/null || echo '?')," \
    "prosody: $(dpkg-query -W -f='${Version}' prosody 2>/dev/null || echo '?')"

# --- Python -------------------------------------------------------------------------------------
usable() { "$1" -c 'import jet_trio, pytest, pytest_trio, trustme' 2>/dev/null; }
PY=${PYTHON:-}
if [ -z "$PY" ] && [ -n "${VIRTUAL_ENV:-}" ]; then PY=$VIRTUAL_ENV/bin/python; fi
if [ -z "$PY" ]; then
    if [ ! -x .venv/bin/python ]; then
        echo "run.sh: creating .venv"
        python3 -m venv .venv || { apt-get install -y -q python3-venv </dev/null && python3 -m venv .venv; }
    fi
    PY=$(pwd)/.venv/bin/python
    if ! usable "$PY"; then
        "$PY" -m pip install -q -e ".[test]"
        for p in plugins/*/; do
            if [ -f "$p/pyproject.toml" ]; then "$PY" -m pip install -q -e "$p"; fi
        done
    fi
fi
if ! usable "$PY"; then
    echo "run.sh: $PY cannot import jet_trio, pytest, pytest_trio and trustme" >&2
    exit 2
fi

# --- namespace ----------------------------------------------------------------------------------
cleanup() {
    ip netns delete "$NS" 2>/dev/null || true
    rm -rf "/etc/netns/$NS"
}
cleanup
trap cleanup EXIT
ip netns add "$NS"
mkdir -p "/etc/netns/$NS"
echo 'nameserver 127.0.0.1' >"/etc/netns/$NS/resolv.conf"
cp -a /etc/ssl "/etc/netns/$NS/ssl"
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" ip route replace default dev lo

# --- tests --------------------------------------------------------------------------------------
# Exit code 5 (nothing collected) fails, unless arguments (-k ...) selected nothing in one run.
pytest_run() {
    local rc=0
    "$@" || rc=$?
    if [ "$rc" -eq 5 ] && [ "$EXTRA_ARGS" -gt 0 ]; then rc=0; fi
    return "$rc"
}
EXTRA_ARGS=$#
status=0
pytest_run ip netns exec "$NS" "$PY" -m pytest -p no:cacheprovider -m "interop and not netns" \
    -v -rA tests/interop "$@" || status=$?
cleanup
pytest_run "$PY" -m pytest -p no:cacheprovider -m "interop and netns" -v -rA tests/interop "$@" ||
    status=$?
exit "$status"
