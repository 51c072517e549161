#!/usr/bin/env bash
# Prepare Podman for soundsright_async (tests, CI, a one-machine validator):
#   1. install podman + runc (+ mmdebstrap, iptables) with apt when they are missing;
#   2. write a project-local containers.conf (runtime runc, explicit ulimits) -- see docs/sandbox.md;
#   3. start `podman system service --time=0` on a unix socket under $SOUNDSRIGHT_PODMAN_DIR
#      (default /tmp/soundsright-podman-$UID), or reuse the one already running there;
#   4. print `export DOCKER_HOST=unix://...` (the only line on stdout; progress goes to stderr).
# Usage: eval "$(scripts/podman.sh)"  (sets and exports DOCKER_HOST in your shell)  or  make podman
# Stop the service with: scripts/podman.sh --stop
set -euo pipefail

DIR="${SOUNDSRIGHT_PODMAN_DIR:-/tmp/soundsright-podman-$(id -u)}"
SOCK="$DIR/podman.sock"
CONF="$DIR/containers.conf"
PIDFILE="$DIR/service.pid"
LOG="$DIR/service.log"

say() { printf 'podman.sh: %s\n' "$*" >&2; }

if [[ "${1:-}" == "--stop" ]]; then
    if [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        kill "$(cat "$PIDFILE")"
        say "stopped service $(cat "$PIDFILE")"
    fi
    rm -f "$PIDFILE"
    exit 0
fi

# 1. packages ---------------------------------------------------------------------------------
need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v mmdebstrap >/dev/null 2>&1 || need+=(mmdebstrap)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v curl >/dev/null 2>&1 || need+=(curl)
if ((${#need[@]})); then
    if [[ "$(id -u)" != 0 ]]; then
        say "missing: ${need[*]}; run as root or: sudo apt-get install ${need[*]}"
        exit 1
    fi
    say "installing ${need[*]} with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "${need[@]}" \
        uidmap slirp4netns fuse-overlayfs netavark aardvark-dns >&2 \
        || apt-get install -y -qq "${need[@]}" >&2
fi

# 2. containers.conf ----------------------------------------------------------------------------
mkdir -p "$DIR"
chmod 0700 "$DIR"
# Raising rlimits is not permitted here, so container ulimits must not exceed ours (design.md §5).
hard_nofile="$(ulimit -Hn)"; [[ "$hard_nofile" == unlimited ]] && hard_nofile=1048576
hard_nproc="$(ulimit -Hu)"; [[ "$hard_nproc" == unlimited ]] && hard_nproc=65536
nofile=$((hard_nofile < 65536 ? hard_nofile : 65536))
nproc=$((hard_nproc < 4096 ? hard_nproc : 4096))  # higher values were refused here
engine_extra=""
if [[ ! -d /run/systemd/system ]]; then
    # No systemd here: cgroups are managed directly and events go to a file.
    engine_extra=$'cgroup_manager = "cgroupfs"\nevents_logger = "file"'
fi
cat >"$CONF.tmp" <<CONF
# Written by scripts/podman.sh; do not edit (it is rewritten on every run).
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
${engine_extra}
CONF
if [[ -f "$CONF" ]] && ! cmp -s "$CONF" "$CONF.tmp"; then
    conf_changed=1
fi
conf_changed="${conf_changed:-0}"
mv "$CONF.tmp" "$CONF"
export CONTAINERS_CONF="$CONF"

# 3. service ------------------------------------------------------------------------------------
ping() { curl -fsS --max-time 2 --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }

if [[ "$conf_changed" == 0 && -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null \
    && ping; then
    say "reusing service $(cat "$PIDFILE") on $SOCK"
else
    if [[ -f "$PIDFILE" ]] && kill "$(cat "$PIDFILE")" 2>/dev/null; then
        for _ in $(seq 1 50); do kill -0 "$(cat "$PIDFILE")" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$SOCK"
    say "starting podman system service on $SOCK (log: $LOG)"
    # Start from / : conmon needs the service's working directory to exist for as long as the
    # service runs, and the caller's (a CI clone, a temp dir) may be deleted under it.
    (cd / && exec nohup podman system service --time=0 "unix://$SOCK" >"$LOG" 2>&1 </dev/null) &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 100); do
        ping && break
        kill -0 "$(cat "$PIDFILE")" 2>/dev/null || { say "service died:"; cat "$LOG" >&2; exit 1; }
        sleep 0.1
    done
    ping || { say "service did not answer on $SOCK"; cat "$LOG" >&2; exit 1; }
fi

echo "export DOCKER_HOST=unix://$SOCK"
