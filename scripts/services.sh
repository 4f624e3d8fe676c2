#!/usr/bin/env bash
# Start or stop the real services the integration and acceptance tests use.
#
#   scripts/services.sh start [names...]    start them in order (default: all); see .services/env
#   scripts/services.sh stop [names...]     stop them (in parallel) and wait until they are gone
#   scripts/services.sh restart [names...]
#   scripts/services.sh status [names...]
#
# Names: zookeeper pouchdb moto swift.  Each is scripts/services/<name>.sh start|stop, which keeps
# its state under .services/<name>/ and appends `export DCRON_TEST_*=...` lines to .services/env
# (tests/conftest.py reads that file).  A service whose script does not exist yet is skipped.
# `start` without names empties .services/env first.  Exit status: non-zero when any service
# failed to start (its log tail is printed) or to stop.
# Install the services first with scripts/install-services.sh.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVICES_DIR="$ROOT/scripts/services"
ENV_FILE="$ROOT/.services/env"
ALL=(zookeeper pouchdb moto swift)

log() { printf 'services: %s\n' "$*" >&2; }

action=${1:-}
shift || true
names=("$@")
[ ${#names[@]} -eq 0 ] && names=("${ALL[@]}")

for name in "${names[@]}"; do
    case " ${ALL[*]} " in
        *" $name "*) ;;
        *) log "unknown service '$name' (known: ${ALL[*]})"; exit 2 ;;
    esac
done

script_of() { echo "$SERVICES_DIR/$1.sh"; }

log_tail() {
    local f
    for f in "$ROOT/.services/$1"/*.log "$ROOT/.services/$1"/*/*.log; do
        [ -f "$f" ] || continue
        log "last lines of $f:"
        tail -n 30 "$f" >&2
    done
}

start_all() {
    local failed=() name t0 ms
    mkdir -p "$ROOT/.services"
    if [ $# -eq ${#ALL[@]} ]; then : >"$ENV_FILE"; else touch "$ENV_FILE"; fi
    for name in "$@"; do
        if [ ! -f "$(script_of "$name")" ]; then
            log "$name: no $(script_of "$name") yet, skipped"
            continue
        fi
        t0=${EPOCHREALTIME/./}
        if DCRON_SERVICES_SH=1 bash "$(script_of "$name")" start; then
            ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
            log "$name started in $((ms / 1000)).$(printf '%03d' $((ms % 1000)))s"
        else
            log "$name FAILED to start"
            log_tail "$name"
            failed+=("$name")
        fi
    done
    if [ ${#failed[@]} -gt 0 ]; then
        log "failed to start: ${failed[*]} (stop the others with: bash scripts/services.sh stop)"
        return 1
    fi
    log "variables in $ENV_FILE:"
    cat "$ENV_FILE" >&2
}

# The services do not depend on each other: stop them all at once (each takes up to ~2 s).
stop_all() {
    local failed=() name pids=() names=() i
    for name in "$@"; do
        [ -f "$(script_of "$name")" ] || continue
        bash "$(script_of "$name")" stop &
        pids+=($!)
        names+=("$name")
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || failed+=("${names[$i]}")
    done
    if [ $# -eq ${#ALL[@]} ] && [ -f "$ENV_FILE" ]; then : >"$ENV_FILE"; fi
    if [ ${#failed[@]} -gt 0 ]; then
        log "failed to stop: ${failed[*]}"
        return 1
    fi
}

case "$action" in
    start) start_all "${names[@]}" ;;
    stop) stop_all "${names[@]}" ;;
    restart) stop_all "${names[@]}" && start_all "${names[@]}" ;;
    status)
        for name in "${names[@]}"; do
            if [ -f "$(script_of "$name")" ]; then
                bash "$(script_of "$name")" status 2>/dev/null || echo "$name: (no status command)"
            else
                echo "$name: no script"
            fi
        done
        ;;
    *)
        echo "usage: $0 start|stop|restart|status [zookeeper pouchdb moto swift]" >&2
        exit 2
        ;;
esac
