#!/usr/bin/env bash
# moto_server (the S3 API) for the integration tests, on 127.0.0.1:15000.
#
#   moto.sh start     start it and wait until it answers HTTP; write .services/env
#   moto.sh stop      stop it (SIGTERM, then SIGKILL after 10 s); its state is in memory and lost
#   moto.sh restart   stop, then start
#   moto.sh status    say whether it runs
#
# moto comes from pip (the project's test extra: moto[server]); the script uses `moto_server` from
# PATH, or `$PYTHON -m moto.server` (PYTHON defaults to python3).  Log: .services/moto/server.log.
# Any access key works (use test/test).  Variable appended to .services/env:
#   DCRON_TEST_S3=http://127.0.0.1:15000
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR="$ROOT/.services/moto"
ENV_FILE="$ROOT/.services/env"
PORT=15000
START_TIMEOUT=30

log() { printf 'moto: %s\n' "$*" >&2; }

# Replaces this script's lines in .services/env with `export VAR=value` for each argument (none:
# just removes them).  Locked, because services.sh stops services in parallel.
write_env() {
    mkdir -p "$(dirname "$ENV_FILE")"
    (
        flock 9
        touch "$ENV_FILE"
        sed -i -E '/^export (DCRON_TEST_S3)=/d' "$ENV_FILE"
        [ $# -eq 0 ] || printf 'export %s\n' "$@" >>"$ENV_FILE"
    ) 9>>"$ENV_FILE.lock"
}

http_status() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3 &&
        head -n1 <&3' _ "$1" 2>/dev/null || true
}

# The end of the log, unless services.sh (which prints it itself) runs this script.
show_log() {
    [ -n "${DCRON_SERVICES_SH:-}" ] || tail -n 30 "$DIR/server.log" >&2 || true
}

pid_of() {
    local pid
    pid=$(cat "$DIR/pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

start() {
    local cmd
    if command -v moto_server >/dev/null 2>&1; then
        cmd=(moto_server)
    elif "${PYTHON:-python3}" -c 'import moto.server' 2>/dev/null; then
        cmd=("${PYTHON:-python3}" -m moto.server)
    else
        log "moto is not installed: pip install 'moto[server]' (the project's test extra)"
        exit 1
    fi
    mkdir -p "$DIR"
    if ! pid_of >/dev/null; then
        if http_status "$PORT" | grep -q "^HTTP"; then
            log "port $PORT is taken by another program; stop it first"
            exit 1
        fi
        rm -f "$DIR/pid"
        : >"$DIR/server.log"
        (
            cd "$DIR"
            setsid bash -c 'echo $$ >pid; exec "$@"' _ "${cmd[@]}" -H 127.0.0.1 -p "$PORT" \
                </dev/null >>"$DIR/server.log" 2>&1 &
        )
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until http_status "$PORT" | grep -q '^HTTP/1\.[01] [0-9][0-9][0-9]'; do
        if [ -s "$DIR/pid" ] && ! pid_of >/dev/null; then
            log "moto_server exited during start-up; last lines of $DIR/server.log:"
            show_log
            exit 1
        fi
        if [ $SECONDS -ge $deadline ]; then
            log "moto_server not ready after ${START_TIMEOUT}s; last lines of $DIR/server.log:"
            show_log
            exit 1
        fi
        sleep 0.1
    done
    write_env "DCRON_TEST_S3=http://127.0.0.1:$PORT"
    log "ready on http://127.0.0.1:$PORT"
}

stop() {
    local pid i
    pid=$(pid_of) || { rm -f "$DIR/pid"; return 0; }
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "moto_server did not stop after 10 s; killing it"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$DIR/pid"
}

case "${1:-}" in
    start) start ;;
    stop)
        write_env
        stop
        ;;
    restart) stop; start ;;
    status) if pid=$(pid_of); then echo "moto: pid $pid, $(http_status $PORT)"; else echo "moto: stopped"; fi ;;
    *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
