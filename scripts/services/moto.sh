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

SERVICE=moto
ENV_VARS=(DCRON_TEST_S3)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PORT=15000
START_TIMEOUT=30

is_ready() { http_status "$PORT" | grep -q '^HTTP/1\.[01] [0-9][0-9][0-9]'; }

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
    start_http_server moto_server "$PORT" "${cmd[@]}" -H 127.0.0.1 -p "$PORT"
    write_env "DCRON_TEST_S3=http://127.0.0.1:$PORT"
    log "ready on http://127.0.0.1:$PORT"
}

case "${1:-}" in
    start) start ;;
    stop)
        write_env
        stop_server moto_server
        ;;
    restart) stop_server moto_server; start ;;
    status) if pid=$(pid_of moto_server); then echo "moto: pid $pid, $(http_status $PORT)"; else echo "moto: stopped"; fi ;;
    *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
