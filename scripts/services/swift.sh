#!/usr/bin/env bash
# A one-node OpenStack Swift (tempauth) on loopback for the integration tests.
#
#   swift.sh start     write the configuration and rings, start memcached and the four servers,
#                      wait until an authenticated request works; write .services/env
#   swift.sh stop      stop them by PID (SIGTERM, then SIGKILL after 10 s); data are kept
#   swift.sh restart   stop, then start
#   swift.sh status    say what runs
#
# Swift comes from Debian (swift swift-proxy swift-account swift-container swift-object memcached;
# scripts/install-services.sh installs them) and runs on Debian's /usr/bin/python3.  Everything
# lives under .services/swift/: conf/ (swift.conf, server confs, rings), data/sdb1, *.log, *.pid.
# The servers are started through conf/launch.py, which points Swift at conf/ before anything is
# loaded, so /etc/swift is never read.
#
# Ports: memcached 11311, proxy 18080, account 16012, container 16011, object 16010.
# The proxy has tempauth (user test:tester, key testing, admin), slo and dlo.
# Variables appended to .services/env:
#   DCRON_TEST_SWIFT_AUTH=http://127.0.0.1:18080/auth/v1.0
#   DCRON_TEST_SWIFT_USER=test:tester
#   DCRON_TEST_SWIFT_KEY=testing
set -euo pipefail

SERVICE=swift
ENV_VARS=(DCRON_TEST_SWIFT_AUTH DCRON_TEST_SWIFT_USER DCRON_TEST_SWIFT_KEY)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CONF="$DIR/conf"
DATA="$DIR/data"
SWIFT_PYTHON=/usr/bin/python3
MEMCACHED_PORT=11311
PROXY_PORT=18080
ACCOUNT_PORT=16012
CONTAINER_PORT=16011
OBJECT_PORT=16010
START_TIMEOUT=60
AUTH_URL="http://127.0.0.1:$PROXY_PORT/auth/v1.0"
AUTH_USER=test:tester
AUTH_KEY=testing
# Start order; stop goes the other way.
SERVICES=(memcached account container object proxy)

pid_file() { echo "$DIR/$1.pid"; }
log_file() { echo "$DIR/$1.log"; }

# The port of the account, container or object server.
port_of() {
    case $1 in
        account) echo "$ACCOUNT_PORT" ;;
        container) echo "$CONTAINER_PORT" ;;
        object) echo "$OBJECT_PORT" ;;
    esac
}

check_installed() {
    local missing=() b
    for b in memcached swift-ring-builder swift-proxy-server swift-account-server \
        swift-container-server swift-object-server; do
        command -v "$b" >/dev/null 2>&1 || missing+=("$b")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "not installed: ${missing[*]}; run: bash scripts/install-services.sh" \
            "(or apt-get install -y swift swift-proxy swift-account swift-container swift-object memcached)"
        exit 1
    fi
}

write_conf() {
    local user
    user=$(id -un)
    mkdir -p "$CONF" "$DATA/sdb1"
    cat >"$CONF/swift.conf" <<EOF
[swift-hash]
swift_hash_path_prefix = dcron-test
swift_hash_path_suffix = dcron-test

[storage-policy:0]
name = Policy-0
default = yes
EOF
    local name
    for name in account container object; do
        cat >"$CONF/$name-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $(port_of "$name")
workers = 0
user = $user
swift_dir = $CONF
devices = $DATA
mount_check = false
disable_fallocate = true
log_name = $name-server
log_level = WARNING

[pipeline:main]
pipeline = $name-server

[app:$name-server]
use = egg:swift#$name
EOF
    done
    cat >"$CONF/proxy-server.conf" <<EOF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $PROXY_PORT
workers = 0
user = $user
swift_dir = $CONF
log_name = proxy-server
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
allow_account_management = true

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:gatekeeper]
use = egg:swift#gatekeeper

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:proxy-logging]
use = egg:swift#proxy_logging

[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MEMCACHED_PORT

[filter:listing_formats]
use = egg:swift#listing_formats

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = $AUTH_KEY .admin
storage_url_scheme = http

[filter:copy]
use = egg:swift#copy

[filter:slo]
use = egg:swift#slo

[filter:dlo]
use = egg:swift#dlo
EOF
    # Swift reads swift.conf (hash prefix/suffix, storage policies) from /etc/swift at import time
    # unless told otherwise; this launcher points it at \$CONF before the server is loaded.
    cat >"$CONF/launch.py" <<EOF
import builtins
import sys

# Refuse every read under /etc/swift (swift.common.utils reads /etc/swift/swift.conf on import).
_open = builtins.open


def _open_outside_etc_swift(file, *args, **kwargs):
    if str(file).startswith("/etc/swift/"):
        raise FileNotFoundError(2, "this test Swift reads its configuration from $CONF only", file)
    return _open(file, *args, **kwargs)


builtins.open = _open_outside_etc_swift
from swift.common import utils  # noqa: E402

utils.set_swift_dir("$CONF")
from swift.common import storage_policy  # noqa: E402

storage_policy.reload_storage_policies()
from swift.common.wsgi import run_wsgi  # noqa: E402

server = sys.argv.pop(1)
conf_file, options = utils.parse_options()
kwargs = {}
if server == "object-server":
    from swift.obj import server as object_server

    kwargs["global_conf_callback"] = object_server.global_conf_callback
sys.exit(run_wsgi(conf_file, server, **options, **kwargs))
EOF
}

build_rings() {
    local name port
    for name in account container object; do
        port=$(port_of "$name")
        # Rebuilt when missing or when the port changed.
        if [ -f "$CONF/$name.ring.gz" ] && [ "$(cat "$CONF/$name.ring.port" 2>/dev/null)" = "$port" ]; then
            continue
        fi
        rm -f "$CONF/$name.builder" "$CONF/$name.ring.gz"
        (
            cd "$CONF"
            swift-ring-builder "$name.builder" create 6 1 0 >/dev/null
            swift-ring-builder "$name.builder" add "r1z1-127.0.0.1:$port/sdb1" 1 >/dev/null
            # rebalance exits 1 on warnings (a one-device ring); the ring is written all the same.
            swift-ring-builder "$name.builder" rebalance >/dev/null || true
        )
        [ -f "$CONF/$name.ring.gz" ] || { log "could not build the $name ring"; exit 1; }
        echo "$port" >"$CONF/$name.ring.port"
    done
}

start_one() {
    local name=$1 cmd
    if pid_of "$name" >/dev/null; then
        return 0
    fi
    case $name in
        memcached) cmd=(memcached -l 127.0.0.1 -p "$MEMCACHED_PORT" -U 0 -m 64 -u "$(id -un)") ;;
        *) cmd=("$SWIFT_PYTHON" "$CONF/launch.py" "$name-server" "$CONF/$name-server.conf" -v) ;;
    esac
    spawn "$name" "${cmd[@]}"
}

# One authenticated round trip through proxy, account, container and object servers.
healthy() {
    local headers url token
    headers=$(curl -s -m 3 -o /dev/null -D - -H "X-Auth-User: $AUTH_USER" -H "X-Auth-Key: $AUTH_KEY" \
        "$AUTH_URL" 2>/dev/null) || return 1
    url=$(printf '%s\n' "$headers" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-storage-url" {print $2}')
    token=$(printf '%s\n' "$headers" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-auth-token" {print $2}')
    [ -n "$url" ] && [ -n "$token" ] || return 1
    curl -sf -m 3 -o /dev/null -X PUT -H "X-Auth-Token: $token" "$url/dcron-healthcheck" || return 1
    curl -sf -m 3 -o /dev/null -X PUT -H "X-Auth-Token: $token" --data-binary ok \
        "$url/dcron-healthcheck/ping" || return 1
    curl -sf -m 3 -o /dev/null -H "X-Auth-Token: $token" "$url/dcron-healthcheck/ping" || return 1
}

start() {
    check_installed
    mkdir -p "$DIR"
    write_conf
    build_rings
    local name
    for name in "${SERVICES[@]}"; do
        start_one "$name"
    done
    local deadline=$((SECONDS + START_TIMEOUT))
    until healthy; do
        for name in "${SERVICES[@]}"; do
            if [ -s "$DIR/$name.pid" ] && ! pid_of "$name" >/dev/null; then
                log "$name exited during start-up; last lines of $DIR/$name.log:"
                show_log "$name"
                stop
                exit 1
            fi
        done
        if [ $SECONDS -ge $deadline ]; then
            log "no authenticated request worked after ${START_TIMEOUT}s; see $DIR/*.log"
            stop
            exit 1
        fi
        sleep 0.2
    done
    write_env "DCRON_TEST_SWIFT_AUTH=$AUTH_URL" "DCRON_TEST_SWIFT_USER=$AUTH_USER" \
        "DCRON_TEST_SWIFT_KEY=$AUTH_KEY"
    log "ready on http://127.0.0.1:$PROXY_PORT (auth $AUTH_URL, $AUTH_USER)"
}

stop() {
    local i
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
        stop_server "${SERVICES[$i]}" &
    done
    wait
}

status() {
    local name pid up=0
    for name in "${SERVICES[@]}"; do
        if pid=$(pid_of "$name"); then
            echo "swift: $name pid $pid"
            up=1
        else
            echo "swift: $name stopped"
        fi
    done
    if [ $up = 1 ]; then
        if healthy; then echo "swift: healthy ($AUTH_URL)"; else echo "swift: NOT healthy"; fi
    fi
}

case "${1:-}" in
    start) start ;;
    stop)
        write_env
        stop
        ;;
    restart) stop; start ;;
    status) status ;;
    *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
