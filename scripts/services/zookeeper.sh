#!/usr/bin/env bash
# ZooKeeper for the integration tests: one standalone server and a 3-server ensemble, on loopback.
#
#   zookeeper.sh start                      start all four servers, wait for them, write .services/env
#   zookeeper.sh stop                       stop all four (SIGTERM, then SIGKILL after 10 s)
#   zookeeper.sh status                     say what runs
#   zookeeper.sh stop-ensemble-member N     stop ensemble server N (1-3) gracefully
#   zookeeper.sh kill-ensemble-member N     SIGKILL ensemble server N (a crash)
#   zookeeper.sh start-ensemble-member N    start it again and wait until it serves
#   zookeeper.sh clean                      stop, then delete all data
#
# Ports: standalone 127.0.0.1:21810; ensemble clients 21811-21813, quorum 21821-21823,
# leader election 21831-21833.  State lives under .services/zookeeper/<server>/ (zoo.cfg, data/,
# server.log, pid).  Variables appended to .services/env:
#   DCRON_TEST_ZK=127.0.0.1:21810
#   DCRON_TEST_ZK_ENSEMBLE=127.0.0.1:21811,127.0.0.1:21812,127.0.0.1:21813
set -euo pipefail

SERVICE=zookeeper
ENV_VARS=(DCRON_TEST_ZK DCRON_TEST_ZK_ENSEMBLE)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
JAVA_CP=/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar
SINGLE_PORT=21810
ENSEMBLE_IDS=(1 2 3)
START_TIMEOUT=30

client_port() { if [ "$1" = single ]; then echo $SINGLE_PORT; else echo $((21810 + ${1#member})); fi; }

# Sends a four-letter word and prints the answer (empty when nothing answers within 1 s).
four_letter() {
    timeout 1 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf %s "$2" >&3 && cat <&3' _ "$1" "$2" \
        2>/dev/null || true
}

pid_file() { echo "$DIR/$1/pid"; }
log_file() { echo "$DIR/$1/server.log"; }

write_config() {
    local name=$1 dir="$DIR/$1" id
    mkdir -p "$dir/data"
    {
        echo "tickTime=500"
        echo "initLimit=20"
        echo "syncLimit=10"
        echo "dataDir=$dir/data"
        echo "clientPort=$(client_port "$name")"
        echo "clientPortAddress=127.0.0.1"
        echo "admin.enableServer=false"
        echo "4lw.commands.whitelist=ruok,srvr,stat,mntr"
        echo "minSessionTimeout=1000"
        echo "maxClientCnxns=0"
        echo "autopurge.snapRetainCount=3"
        echo "autopurge.purgeInterval=1"
        if [ "$name" != single ]; then
            for id in "${ENSEMBLE_IDS[@]}"; do
                echo "server.$id=127.0.0.1:$((21820 + id)):$((21830 + id))"
            done
        fi
    } >"$dir/zoo.cfg"
    if [ "$name" != single ]; then echo "${name#member}" >"$dir/data/myid"; fi
}

launch() {
    local name=$1 dir="$DIR/$1"
    if pid_of "$name" >/dev/null; then return 0; fi
    write_config "$name"
    if [ -n "$(four_letter "$(client_port "$name")" ruok)" ]; then
        log "$name: port $(client_port "$name") is taken by another program; stop it first"
        return 1
    fi
    : >"$dir/server.log"
    spawn "$name" java -Xmx256m -cp "$JAVA_CP" -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
        org.apache.zookeeper.server.quorum.QuorumPeerMain "$dir/zoo.cfg"
    for _ in $(seq 50); do [ -s "$dir/pid" ] && return 0; sleep 0.1; done
    log "$name: no pid file after 5 s"
    return 1
}

# Ready: "imok" for the standalone server; a Mode (leader/follower) for ensemble members, which
# answer "imok" before they have joined a quorum.
is_ready() {
    local name=$1 port
    port=$(client_port "$name")
    if [ "$name" = single ]; then
        [ "$(four_letter "$port" ruok)" = imok ]
    else
        [ "$(four_letter "$port" ruok)" = imok ] && four_letter "$port" srvr | grep -q '^Mode: '
    fi
}

member_name() {
    case "${1:-}" in
        1 | 2 | 3) echo "member$1" ;;
        *) log "ensemble member must be 1, 2 or 3, not '${1:-}'"; exit 2 ;;
    esac
}

ALL=(single member1 member2 member3)

case "${1:-}" in
    start)
        command -v java >/dev/null || { log "java not found: run scripts/install-services.sh"; exit 1; }
        [ -f /usr/share/java/zookeeper.jar ] || { log "ZooKeeper not installed: run scripts/install-services.sh"; exit 1; }
        for name in "${ALL[@]}"; do launch "$name"; done
        wait_ready "$START_TIMEOUT" "${ALL[@]}"
        write_env "DCRON_TEST_ZK=127.0.0.1:$SINGLE_PORT" \
            "DCRON_TEST_ZK_ENSEMBLE=127.0.0.1:21811,127.0.0.1:21812,127.0.0.1:21813"
        log "standalone on 127.0.0.1:$SINGLE_PORT, ensemble on 127.0.0.1:21811-21813"
        ;;
    stop)
        write_env
        for name in "${ALL[@]}"; do stop_server "$name" & done
        wait
        ;;
    status)
        for name in "${ALL[@]}"; do
            if pid=$(pid_of "$name"); then
                echo "$name: pid $pid, port $(client_port "$name"), $(four_letter "$(client_port "$name")" srvr | grep '^Mode: ' || echo 'not serving')"
            else
                echo "$name: stopped"
            fi
        done
        ;;
    stop-ensemble-member) stop_server "$(member_name "${2:-}")" TERM ;;
    kill-ensemble-member) stop_server "$(member_name "${2:-}")" KILL ;;
    start-ensemble-member)
        name=$(member_name "${2:-}")
        launch "$name"
        wait_ready "$START_TIMEOUT" "$name"
        ;;
    clean)
        bash "$0" stop
        rm -rf "$DIR"
        ;;
    *)
        echo "usage: $0 start|stop|status|clean|stop-ensemble-member N|kill-ensemble-member N|start-ensemble-member N" >&2
        exit 2
        ;;
esac
