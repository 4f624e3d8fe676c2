# shellcheck shell=bash
# What the service scripts (scripts/services/<name>.sh) share; each sources it:
#
#   SERVICE=moto                 # the prefix of log lines, and the folder .services/$SERVICE
#   ENV_VARS=(DCRON_TEST_S3)     # the variables this script writes to .services/env
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sets ROOT (the repository), DIR (.services/$SERVICE, the script's state) and ENV_FILE
# (.services/env, read by tests/conftest.py).  The helpers take the NAME of a server (a script may
# run several) and find it through these functions, which a script redefines after sourcing this
# when it runs more than one server:
#
#   pid_file NAME    the file holding the server's PID (it leads its own process group);
#                    default $DIR/pid
#   log_file NAME    the file its output goes to; default $DIR/server.log
#   is_ready NAME    succeeds when it serves (for wait_ready; no default)
#
# Servers are signalled and watched through their PID files only, never by process name.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DIR="$ROOT/.services/$SERVICE"
ENV_FILE="$ROOT/.services/env"

pid_file() { echo "$DIR/pid"; }
log_file() { echo "$DIR/server.log"; }

log() { printf '%s: %s\n' "$SERVICE" "$*" >&2; }

# Replaces this script's lines (ENV_VARS) in .services/env with `export VAR=value` for each
# argument (none: just removes them).  Locked, because services.sh stops services in parallel.
write_env() {
    local names
    names=$(IFS='|'; echo "${ENV_VARS[*]}")
    mkdir -p "$(dirname "$ENV_FILE")"
    (
        flock 9
        touch "$ENV_FILE"
        sed -i -E "/^export ($names)=/d" "$ENV_FILE"
        [ $# -eq 0 ] || printf 'export %s\n' "$@" >>"$ENV_FILE"
    ) 9>>"$ENV_FILE.lock"
}

# The status line of GET / on 127.0.0.1:PORT (empty when nothing answers within 2 s).
http_status() {
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3 &&
        head -n1 <&3' _ "$1" 2>/dev/null || true
}

# The end of NAME's log, unless services.sh (which prints it itself) runs this script.
show_log() {
    [ -n "${DCRON_SERVICES_SH:-}" ] || tail -n 30 "$(log_file "$1")" >&2 || true
}

# NAME's PID while it runs; fails when it does not.
pid_of() {
    local pid
    pid=$(cat "$(pid_file "$1")" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# spawn NAME COMMAND...: run COMMAND in the background in its own session (so stop_server can
# signal everything it starts), in the folder of NAME's PID file, output appended to NAME's log.
# The PID is written by the shell that then becomes COMMAND (exec), whether or not setsid forks.
spawn() {
    local name=$1 pidfile logfile
    shift
    pidfile=$(pid_file "$name")
    logfile=$(log_file "$name")
    rm -f "$pidfile"
    (
        cd "$(dirname "$pidfile")" || exit
        setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" </dev/null >>"$logfile" 2>&1 &
    )
}

# wait_ready SECONDS NAME...: wait until `is_ready NAME` succeeds for every NAME.  Fails (showing
# the end of the log) as soon as one of them exits, or when some are not ready after SECONDS.
wait_ready() {
    local timeout=$1 deadline=$((SECONDS + $1)) name pending
    shift
    while :; do
        pending=()
        for name in "$@"; do
            is_ready "$name" || pending+=("$name")
        done
        [ ${#pending[@]} -eq 0 ] && return 0
        for name in "${pending[@]}"; do
            if [ -s "$(pid_file "$name")" ] && ! pid_of "$name" >/dev/null; then
                log "$name exited during start-up; last lines of $(log_file "$name"):"
                show_log "$name"
                return 1
            fi
        done
        if [ $SECONDS -ge $deadline ]; then
            for name in "${pending[@]}"; do
                log "$name not ready after ${timeout}s; last lines of $(log_file "$name"):"
                show_log "$name"
            done
            return 1
        fi
        sleep 0.1
    done
}

# start_http_server NAME PORT COMMAND...: unless NAME runs, start COMMAND, an HTTP server on
# 127.0.0.1:PORT, with an empty log (refused when another program answers on PORT); then wait up
# to START_TIMEOUT seconds until `is_ready NAME`.  Exits the script when it fails.
start_http_server() {
    local name=$1 port=$2
    shift 2
    if ! pid_of "$name" >/dev/null; then
        if http_status "$port" | grep -q "^HTTP"; then
            log "port $port is taken by another program; stop it first"
            exit 1
        fi
        : >"$(log_file "$name")"
        spawn "$name" "$@"
    fi
    wait_ready "$START_TIMEOUT" "$name" || exit 1
}

# stop_server NAME [SIGNAL]: signal NAME's process group (SIGTERM by default), SIGKILL it after
# 10 s, wait until it is gone, then SIGKILL whatever is left in its group; remove its PID file.
stop_server() {
    local name=$1 sig=${2:-TERM} pid
    pid=$(pid_of "$name") || { rm -f "$(pid_file "$name")"; return 0; }
    kill -"$sig" -- "-$pid" 2>/dev/null || kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not stop after 10 s; killing it"
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$(pid_file "$name")"
}
