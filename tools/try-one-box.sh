#!/usr/bin/env bash
# Try hbd on one box: two nodes in network namespaces, a LAN (a bridge), a null-modem cable
# (socat), a ping node, and a group with a service address and a script. docs/try-it.md.
#
#   tools/try-one-box.sh up              build it and start both daemons
#   tools/try-one-box.sh status [NODE]   hbctl status on one node (default: both)
#   tools/try-one-box.sh events NODE     hbctl events on that node
#   tools/try-one-box.sh where           which node has the service address and the service
#   tools/try-one-box.sh unplug NODE     pull NODE's LAN cable (it loses the peer's LAN path
#   tools/try-one-box.sh plug NODE         and the ping node: isolated); plug it back
#   tools/try-one-box.sh cut-serial      stall the null-modem cable (bytes stop, both ways)
#   tools/try-one-box.sh heal-serial
#   tools/try-one-box.sh kill NODE       SIGKILL NODE's daemon (its resources run on)
#   tools/try-one-box.sh stop NODE       stop NODE's daemon cleanly (it hands its groups over)
#   tools/try-one-box.sh start NODE      start NODE's daemon again
#   tools/try-one-box.sh down            stop everything and remove it all
#
# Needs root, iproute2 and socat. Everything lives under $TRY_DIR (default /tmp/hbd-try) and
# in namespaces named hbd-try-*; `down` removes exactly those.
set -euo pipefail

DIR=${TRY_DIR:-/tmp/hbd-try}
REPO=$(cd "$(dirname "$0")/.." && pwd)
HBD=${HBD:-$(command -v hbd || echo "$REPO/.venv/bin/hbd")}
HBCTL=${HBCTL:-$(command -v hbctl || echo "$REPO/.venv/bin/hbctl")}
NODES=(alpha beta)
declare -A ADDR=([alpha]=10.77.0.1 [beta]=10.77.0.2)
PING=10.77.0.254
VIP=10.77.0.100
SW=hbd-try-sw

die() { echo "try-one-box: $*" >&2; exit 2; }
ns() { echo "hbd-try-$1"; }
node_arg() {
  [[ ${1:-} == alpha || ${1:-} == beta ]] || die "name a node: alpha or beta"
}

start_node() {
  local n=$1 d="$DIR/$1"
  if [[ -f $d/hbd.pid ]] && kill -0 "$(cat "$d/hbd.pid")" 2>/dev/null; then
    echo "$n: hbd is already running"; return
  fi
  # nsenter, not `ip netns exec`: the daemon sees the same mounts as this shell
  nsenter --net="/run/netns/$(ns "$n")" "$HBD" --config-dir "$d/ha.d" \
    --state-dir "$d/state" --run-dir "$d/run" --node-name "$n" >>"$d/hbd.out" 2>&1 &
  echo $! >"$d/hbd.pid"
  echo "$n: hbd started (pid $!, log $d/hbd.log)"
}

write_node() {
  local n=$1 peer=$2 tty=$3 d="$DIR/$1"
  mkdir -p "$d/ha.d/resource.d" "$d/state" "$d/run"
  cat >"$d/ha.d/ha.cf" <<EOF
keepalive 200ms
warntime 600ms
deadtime 1
initdead 3
auto_failback on
wire hbd
logfile $d/hbd.log
logfacility none
serial $tty
baud 19200
bcast eth0
ping $PING
node alpha beta
EOF
  printf 'auth 1\n1 sha256 %s\n' "$KEY" >"$d/ha.d/authkeys"
  chmod 600 "$d/ha.d/authkeys"
  echo "alpha IPaddr::$VIP/24 try-service" >"$d/ha.d/haresources"
  cat >"$d/ha.d/resource.d/try-service" <<EOF
#!/bin/sh
# stands for a real service: a file that exists while it runs on this node
case "\$1" in
  start) touch $d/service.running ;;
  stop) rm -f $d/service.running ;;
  status) [ -e $d/service.running ] && echo running || echo stopped ;;
esac
EOF
  chmod 755 "$d/ha.d/resource.d/try-service"
}

up() {
  command -v socat >/dev/null || die "needs socat (apt install socat)"
  [[ -x $HBD ]] || die "no hbd at $HBD (set HBD=, or: pip install .)"
  [[ -e /run/netns/$SW ]] && die "already up (tools/try-one-box.sh down first)"
  mkdir -p "$DIR"
  # the LAN: a bridge in its own namespace, a port for each node and for the ping node
  ip netns add "$SW"
  ip -n "$SW" link add br0 type bridge
  ip -n "$SW" link set br0 up
  local host
  for host in alpha beta ping; do
    ip netns add "$(ns "$host")"
    ip -n "$SW" link add "p-$host" type veth peer name eth0 netns "$(ns "$host")"
    ip -n "$SW" link set "p-$host" master br0 up
    ip -n "$(ns "$host")" link set lo up
    ip -n "$(ns "$host")" link set eth0 up
  done
  ip -n "$(ns alpha)" addr add "${ADDR[alpha]}/24" dev eth0
  ip -n "$(ns beta)" addr add "${ADDR[beta]}/24" dev eth0
  ip -n "$(ns ping)" addr add "$PING/24" dev eth0
  # the null-modem cable: two ptys joined by socat
  socat -d -d "pty,raw,echo=0,link=$DIR/ttyA" "pty,raw,echo=0,link=$DIR/ttyB" \
    </dev/null >/dev/null 2>"$DIR/socat.log" &
  echo $! >"$DIR/socat.pid"
  for _ in $(seq 50); do [[ -e $DIR/ttyA && -e $DIR/ttyB ]] && break; sleep 0.1; done
  [[ -e $DIR/ttyA && -e $DIR/ttyB ]] || die "socat made no ptys (see $DIR/socat.log)"
  KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  write_node alpha beta "$(readlink -f "$DIR/ttyA")"
  write_node beta alpha "$(readlink -f "$DIR/ttyB")"
  start_node alpha
  start_node beta
  echo "up: alpha ${ADDR[alpha]}, beta ${ADDR[beta]}, ping node $PING, service address $VIP"
  echo "the group starts on alpha within a few seconds: tools/try-one-box.sh where"
}

status() {
  local n
  for n in "${@:-${NODES[@]}}"; do
    node_arg "$n"
    echo "== $n"
    "$HBCTL" --run-dir "$DIR/$n/run" status || true
  done
}

where() {
  local n found=0
  for n in "${NODES[@]}"; do
    local has_ip=no has_svc=no
    ip -n "$(ns "$n")" -4 addr show dev eth0 | grep -q "inet $VIP/" && has_ip=yes
    [[ -e $DIR/$n/service.running ]] && has_svc=yes
    echo "$n: service address $has_ip, service $has_svc"
    [[ $has_svc == yes ]] && found=$((found + 1))
  done
  [[ $found -le 1 ]] || echo "BOTH nodes run the service"
}

stop_node() {
  local n=$1 sig=$2 d="$DIR/$1"
  [[ -f $d/hbd.pid ]] || { echo "$n: not started here"; return; }
  local pid
  pid=$(cat "$d/hbd.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "-$sig" "$pid"
    [[ $sig == TERM ]] && for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "$n: hbd sent SIG$sig"
  fi
  [[ $sig == KILL ]] && rm -f "$d/hbd.pid"
  return 0
}

down() {
  local n
  for n in "${NODES[@]}"; do
    [[ -f $DIR/$n/hbd.pid ]] && stop_node "$n" TERM >/dev/null
    [[ -f $DIR/$n/hbd.pid ]] && { kill -KILL "$(cat "$DIR/$n/hbd.pid")" 2>/dev/null || true; }
  done
  if [[ -f $DIR/socat.pid ]]; then
    kill -CONT "$(cat "$DIR/socat.pid")" 2>/dev/null || true
    kill "$(cat "$DIR/socat.pid")" 2>/dev/null || true
  fi
  for n in alpha beta ping sw; do
    [[ -e /run/netns/hbd-try-$n ]] && ip netns del "hbd-try-$n"
  done
  rm -rf "$DIR"
  echo "down: namespaces hbd-try-*, the daemons, socat and $DIR are gone"
}

cmd=${1:-}
shift || true
case $cmd in
  up) up ;;
  status) status "$@" ;;
  events) node_arg "${1:-}"; "$HBCTL" --run-dir "$DIR/$1/run" events "${@:2}" ;;
  where) where ;;
  unplug) node_arg "${1:-}"; ip -n "$SW" link set "p-$1" down; echo "$1: LAN cable pulled" ;;
  plug) node_arg "${1:-}"; ip -n "$SW" link set "p-$1" up; echo "$1: LAN cable back" ;;
  cut-serial) kill -STOP "$(cat "$DIR/socat.pid")"; echo "serial cable stalled" ;;
  heal-serial) kill -CONT "$(cat "$DIR/socat.pid")"; echo "serial cable carries again" ;;
  kill) node_arg "${1:-}"; stop_node "$1" KILL ;;
  stop) node_arg "${1:-}"; stop_node "$1" TERM ;;
  start) node_arg "${1:-}"; start_node "$1" ;;
  down) down ;;
  *) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; [[ -z $cmd ]] || exit 2 ;;
esac
