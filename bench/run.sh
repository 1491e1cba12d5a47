#!/usr/bin/env bash
# websmtpd benchmark: side-by-side comparison with the original Go websmtp and an empty
# Pistache handler, /mail/batch rate, submit rate/latency, delivery rate, idle
# submit-to-delivered latency and RSS with a large queue, all in one run, all on 127.0.0.1.
# See bench/README.md.
#
#   ./bench/run.sh                      # full run (several minutes; the RSS phase is the long one)
#   BENCH_QUICK=1 ./bench/run.sh        # smoke test: 3 s wrk runs, 2 comparison rounds, 5,000-job delivery, 50,000-job RSS
#   PEER_BIN=/path/to/websmtp           # the original Go websmtp, run side by side in the comparison phase
#   BENCH_ONLY=compare,batch            # only these phases (comma list of compare, batch, submit, idle,
#                                       #   delivery, rss; "bars" = compare,batch,delivery)
#   BENCH_ROUNDS=N                      # comparison rounds (default 3; quick: 2)
#   WEBSMTPD=/path/to/websmtpd          # binary (default: build/release/apps/websmtpd/websmtpd)
#   BENCH_RSS_JOBS=N                    # jobs queued for the RSS phase (default 1000000; 0 skips it)
#   BENCH_DELIVERY_JOBS=N               # jobs for the delivery phase (default 20000)
#   BENCH_KEEP=1                        # keep the temporary work directory (data dirs, logs)
#
# Results: a table on stdout, one JSON line per measurement appended to bench/out/results.jsonl,
# daemon/wrk/sink logs of the run in bench/out/run-<id>/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
WEBSMTPD=${WEBSMTPD:-$REPO/build/release/apps/websmtpd/websmtpd}
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3)
B="$PY $HERE/bench.py"
SINK=/usr/sbin/smtp-sink
SOURCE=/usr/sbin/smtp-source

PEER_BIN=${PEER_BIN:-}
FLOOR_SRC=$HERE/floor/empty_handler.cpp
ONLY=${BENCH_ONLY:-all}
[[ $ONLY == bars ]] && ONLY=compare,batch,delivery
want() { [[ $ONLY == all || ,$ONLY, == *,$1,* ]]; }

QUICK=${BENCH_QUICK:-0}
if [[ $QUICK == 1 ]]; then
  WRK_SECS=3
  ROUNDS=${BENCH_ROUNDS:-2}
  WRK_DUR=3s
  RSS_JOBS=${BENCH_RSS_JOBS:-50000}
  DELIV_JOBS=${BENCH_DELIVERY_JOBS:-5000}
  LAT_JOBS=50
else
  WRK_SECS=10
  ROUNDS=${BENCH_ROUNDS:-3}
  WRK_DUR=10s
  RSS_JOBS=${BENCH_RSS_JOBS:-1000000}
  DELIV_JOBS=${BENCH_DELIVERY_JOBS:-20000}
  LAT_JOBS=200
fi
RSS_CAP_S=600       # the RSS phase's submit is cut off after 10 minutes
DRAIN_CAP_S=120     # every "wait until delivered" is cut off after 2 minutes

for tool in "$WEBSMTPD" "$SINK" "$SOURCE" "$(command -v wrk || echo /nonexistent/wrk)"; do
  if [[ ! -x $tool ]]; then
    echo "bench: missing $tool (make build; apt-get install -y postfix wrk)" >&2
    exit 2
  fi
done
if [[ -n $PEER_BIN && ! -x $PEER_BIN ]]; then
  echo "bench: PEER_BIN=$PEER_BIN is not an executable (build it with build-original.sh)" >&2
  exit 2
fi
if [[ ! $ROUNDS =~ ^[1-9][0-9]?$ ]]; then
  echo "bench: BENCH_ROUNDS must be 1..99" >&2
  exit 2
fi

RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$HERE/out
LOGS=$OUT/run-$RUN_ID
mkdir -p "$OUT" "$LOGS"
WORK=$(mktemp -d /tmp/websmtp-bench.XXXXXX)
RUN_RESULTS=$WORK/results.jsonl
: >"$RUN_RESULTS"

# ---- process bookkeeping: everything started here is tracked and ended on exit ----------
PIDS=()
alive() {  # pid exists and is not a zombie
  [[ -r /proc/$1/stat ]] || return 1
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [[ -n $st && $st != Z ]]
}
track() { PIDS+=("$1"); }
untrack() {
  local p keep=()
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}
# stop PID [signal] [seconds]: signal it, wait (bounded), then SIGKILL; reaps it.
stop_pid() {
  local pid=$1 sig=${2:-TERM} secs=${3:-10} i
  if alive "$pid"; then
    kill -CONT "$pid" 2>/dev/null || true
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      echo "bench: pid $pid still alive ${secs}s after SIG$sig, sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  local rc=0
  wait "$pid" 2>/dev/null || rc=$?
  untrack "$pid"
  return $rc
}
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do
    kill -CONT "$p" 2>/dev/null || true
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]+"${PIDS[@]}"}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30; do
      alive "$p" || break
      sleep 0.1
    done
    if alive "$p"; then kill -KILL "$p" 2>/dev/null || true; fi
    wait "$p" 2>/dev/null || true
  done
  if [[ ${BENCH_KEEP:-0} == 1 ]]; then
    echo "bench: work directory kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
now() { date +%s.%N; }
log() { printf '\n== %s [load %s]\n' "$*" "$(loadavg)" >&2; }

record() {  # record phase=... key=value ... (value: JSON, a plain word, or @file.json)
  $B record --out "$RUN_RESULTS" --out "$OUT/results.jsonl" run="$RUN_ID" quick="$QUICK" \
    time="$(date -u +%FT%TZ)" host="$(hostname)" cpus="$(nproc)" "$@"
}

# ---- smtp-sink ----------------------------------------------------------------------------
SINK_USER=()
[[ $EUID -eq 0 ]] && SINK_USER=(-u nobody)
# start_sink NAME: sets SINK_PID, SINK_PORT; its running counter goes to $WORK/NAME.sink
start_sink() {
  local name=$1
  SINK_PORT=$($B freeport)
  "$SINK" "${SINK_USER[@]}" -c "127.0.0.1:$SINK_PORT" 1000 >"$WORK/$name.sink" 2>"$WORK/$name.sink.err" &
  SINK_PID=$!
  track "$SINK_PID"
  $B wait-port "$SINK_PORT" --pid "$SINK_PID" --timeout 10
}
sink_msgs() {  # messages the sink has received (from its -c counter)
  local n
  n=$(tr '\r' '\n' <"$WORK/$1.sink" | grep -o 'mesg=[0-9]*' | tail -n 1 | cut -d= -f2 || true)
  echo "${n:-0}"
}

# ---- websmtpd -----------------------------------------------------------------------------
# start_daemon NAME THREADS SINK_PORT DATA_DIR [KEY=VALUE ...]: sets D_PID, D_PORT, D_ADMIN, D_T0
DAEMON_LOGS=()
start_daemon() {
  local name=$1 threads=$2 sport=$3 data=$4
  shift 4
  local dir=$WORK/$name
  mkdir -p "$dir"
  rm -f "$dir/ready.json"
  D_T0=$(now)
  # env -i: nothing from the caller's environment (PORT, DATA_DIR, ...) leaks in;
  # cwd is a temp dir and --env-file points nowhere, so no .env is read.
  (cd "$dir" && exec env -i PATH=/usr/bin:/bin HOST=127.0.0.1 PORT=0 ADMIN_PORT=0 \
    READY_FILE="$dir/ready.json" DATA_DIR="$data" THREADS="$threads" DELIVERY=relay \
    SMTP_SERVER=127.0.0.1 SMTP_PORT="$sport" SMTP_TLS=none LOG_LEVEL=warn SHUTDOWN_GRACE=3s \
    "$@" "$WEBSMTPD" --env-file /nonexistent >>"$dir/daemon.log" 2>&1) &
  D_PID=$!
  track "$D_PID"
  DAEMON_LOGS+=("$dir/daemon.log")
  local r
  r=$($B wait-ready "$dir/ready.json" "$D_PID" --timeout 30)
  D_PORT=$(echo "$r" | cut -d' ' -f2)
  D_ADMIN=$(echo "$r" | cut -d' ' -f3)
  D_READY=$(now)
}
# stop_daemon NAME: SIGTERM, bounded wait; notes the exit code
EXITS=()
stop_daemon() {
  local rc=0
  stop_pid "$D_PID" TERM 15 || rc=$?
  EXITS+=("$1:$rc")
  echo "bench: websmtpd ($1) exited with $rc" >&2
}

# bounded_submit NAME N CAP_S: submit N jobs with wrk (each wrk thread stops itself after
# its share; bench.py SIGINTs wrk once /admin/queue counts N). Writes $WORK/NAME.submit.json.
bounded_submit() {
  local name=$1 n=$2 cap=$3 t0 wpid
  t0=$(now)
  wrk -t2 -c64 -d"${cap}s" --latency -s "$HERE/post.lua" "http://127.0.0.1:$D_PORT/mail/send" -- "$n" 2 \
    >"$WORK/$name.wrk" 2>&1 &
  wpid=$!
  track "$wpid"
  $B stop-wrk-at --admin "$D_ADMIN" --target "$n" --wrk "$wpid" --t0 "$t0" --timeout "$((cap + 5))" \
    >"$WORK/$name.submit.json"
  stop_pid "$wpid" INT 10 || true
  $B wrkjson "$WORK/$name.wrk" >"$WORK/$name.wrk.json" || echo '{}' >"$WORK/$name.wrk.json"
  cat "$WORK/$name.submit.json" >&2
}

# ---- the original Go websmtp (PEER_BIN) ---------------------------------------------------
# start_peer NAME SINK_PORT: sets P_PID, P_PORT. The original reads PORT, THREADS, GIN_MODE,
# SMTP_SERVER, SMTP_PORT, SMTP_USER, SMTP_PWD from the environment and then from .env in its
# working directory: env -i and an empty temp dir as cwd, so only what is given here counts.
# It listens on 0.0.0.0:PORT (its code fixes the host; PORT=0 would hide the port), so the
# port is picked free beforehand; all traffic still goes to 127.0.0.1. Ready once GET /status
# answers 200. gin.Default() writes one access-log line per request to stdout in every
# GIN_MODE: it goes to /dev/null, the cheapest place for it.
PEER_LOGS=()
start_peer() {
  local name=$1 sport=$2
  local dir=$WORK/$name
  mkdir -p "$dir"
  P_PORT=$($B freeport)
  (cd "$dir" && exec env -i PATH=/usr/bin:/bin GIN_MODE=release PORT="$P_PORT" THREADS=4 \
    SMTP_SERVER=127.0.0.1 SMTP_PORT="$sport" "$PEER_BIN" >/dev/null 2>>"$dir/peer.log") &
  P_PID=$!
  track "$P_PID"
  PEER_LOGS+=("$dir/peer.log")
  $B wait-http --port "$P_PORT" --path /status --pid "$P_PID" --timeout 30
}

# ---- the floor: an empty Pistache handler (bench/floor/empty_handler.cpp) -----------------
# Compiled here (not by CMake) into bench/out/floor/, again whenever the source is newer.
FLOOR_BIN=$OUT/floor/empty_handler
build_floor() {
  if [[ -x $FLOOR_BIN && $FLOOR_BIN -nt $FLOOR_SRC ]]; then return 0; fi
  mkdir -p "$OUT/floor"
  local flags
  flags=$(pkg-config --cflags --libs libpistache) || { echo "bench: pkg-config libpistache failed" >&2; return 1; }
  # shellcheck disable=SC2086  # flags are words
  g++ -O2 -std=c++20 -o "$FLOOR_BIN.tmp" "$FLOOR_SRC" $flags -pthread && mv "$FLOOR_BIN.tmp" "$FLOOR_BIN"
}
# start_floor NAME: sets F_PID, F_PORT
start_floor() {
  local dir=$WORK/$1
  mkdir -p "$dir"
  "$FLOOR_BIN" "$dir/port" >"$dir/floor.log" 2>&1 &
  F_PID=$!
  track "$F_PID"
  F_PORT=$($B wait-portfile "$dir/port" "$F_PID" --timeout 10)
}

# measure_wrk NAME SERVER_PID CONNS SECONDS URL SCRIPT [SCRIPT_ARGS...]: one wrk run with the
# server's CPU (and the sink's, wrk's, the machine's) measured around it -> $WORK/NAME.m.json
measure_wrk() {
  local name=$1 pid=$2 conns=$3 secs=$4 url=$5 script=$6 mpid
  shift 6
  local extra=()
  [[ $# -gt 0 ]] && extra=(-- "$@")
  local also=()
  [[ -n ${SINK_PID:-} ]] && alive "$SINK_PID" && also=(--also "$SINK_PID")
  $B measure --pid "$pid" "${also[@]}" --log "$WORK/$name.wrk" --timeout "$((secs + 60))" -- \
    wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$script" "$url" "${extra[@]}" >"$WORK/$name.m.json" &
  mpid=$!
  track "$mpid"
  wait "$mpid" || true
  untrack "$mpid"
}
summary_line() {  # one line on stderr for a measurement
  $B summary-line "$WORK/$1.m.json" "$2" >&2 || true
}

# cmp_one ROUND SERVER MODE: SERVER websmtpd|peer, MODE live|held; fresh sink and process each.
cmp_one() {
  local r=$1 srv=$2 mode=$3 name="cmp$1-$2-$3" pid port sub=null rc=0 l
  start_sink "$name"
  [[ $mode == held ]] && kill -STOP "$SINK_PID"
  if [[ $srv == websmtpd ]]; then
    start_daemon "$name" 4 "$SINK_PORT" "$WORK/$name/data"
    pid=$D_PID port=$D_PORT
  else
    start_peer "$name" "$SINK_PORT"
    pid=$P_PID port=$P_PORT
  fi
  l=$(loadavg)
  measure_wrk "$name" "$pid" 64 "$WRK_SECS" "http://127.0.0.1:$port/mail/send" "$HERE/post.lua"
  $B proc "$pid" >"$WORK/$name.proc.json"
  local sunk died=false
  sunk=$(sink_msgs "$name")  # delivered while wrk ran (the original: 10 msg/s per worker)
  if ! alive "$pid"; then
    died=true  # recorded and left out of the ratios; the run goes on
    echo "bench: $srv ($name) DIED during the measurement; see its log in bench/out/run-$RUN_ID/" >&2
  fi
  if [[ $srv == websmtpd && $died == false ]]; then
    sub=$($B queue "$D_ADMIN" | $PY -c 'import json,sys;print(json.load(sys.stdin)["submitted_total"])') || sub=null
  fi
  [[ $mode == held ]] && kill -CONT "$SINK_PID"
  if [[ $srv == websmtpd ]]; then
    stop_daemon "$name"
  else
    stop_pid "$pid" TERM 10 || rc=$?
    EXITS+=("$name:$rc")  # the original has no SIGTERM handler: 143 is its normal end
  fi
  summary_line "$name" "$srv, delivery $mode"
  record phase=compare round="$r" server="$srv" mode="$mode" threads=4 conns=64 duration_s="$WRK_SECS" load="$l" \
    m=@"$WORK/$name.m.json" proc=@"$WORK/$name.proc.json" submitted_total="$sub" sink_at_wrk_end="$sunk" \
    server_died="$died"
  stop_pid "$SINK_PID" TERM 5 || true
  SINK_PID=
  [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$WORK/$name/data"  # up to a few hundred MB each
}
cmp_floor() {
  local r=$1 name="cmp$1-floor" l
  start_floor "$name"
  l=$(loadavg)
  measure_wrk "$name" "$F_PID" 64 "$WRK_SECS" "http://127.0.0.1:$F_PORT/mail/send" "$HERE/post.lua"
  $B proc "$F_PID" >"$WORK/$name.proc.json"
  local died=false
  alive "$F_PID" || died=true
  stop_pid "$F_PID" TERM 10 || true
  summary_line "$name" "empty Pistache handler"
  record phase=compare round="$r" server=floor mode=floor threads=2 conns=64 duration_s="$WRK_SECS" load="$l" \
    m=@"$WORK/$name.m.json" proc=@"$WORK/$name.proc.json" server_died="$died"
}

echo "websmtpd benchmark $RUN_ID: $WEBSMTPD ($(nproc) CPUs, quick=$QUICK)" >&2
if pgrep -x master >/dev/null; then
  echo "bench: note: a Postfix master process is running (left alone; it is not used here)" >&2
fi

git_rev() {  # git_rev PATH [PATHSPEC]: short commit of the git tree holding PATH, "+dirty" when
  local d=$1    # PATHSPEC (default: the whole tree) has uncommitted changes
  [[ -d $d ]] || d=$(dirname "$d")
  git -C "$d" rev-parse --short HEAD 2>/dev/null || { echo unknown; return; }
  git -C "$d" diff --quiet HEAD -- "${2:-:/}" 2>/dev/null || echo '+dirty'
}
# websmtpd's commit is that of the git tree its binary lies in (its build dir is inside it)
record phase=run_info load="$(loadavg)" loadavg="$(cat /proc/loadavg)" \
  websmtpd="$WEBSMTPD (sha256 $(sha256sum "$WEBSMTPD" | cut -c1-16), built $(date -u -r "$WEBSMTPD" +%FT%TZ))" \
  commit="$(git_rev "$WEBSMTPD" | tr -d '\n')" bench_commit="$(git_rev "$HERE" . | tr -d '\n')" \
  peer="${PEER_BIN:+$PEER_BIN (sha256 $(sha256sum "$PEER_BIN" | cut -c1-16))}" phases="$ONLY" rounds="$ROUNDS"

# ==== 0. side by side: websmtpd, the original (PEER_BIN), the empty Pistache handler =========
# Each measurement: a fresh process and a fresh sink, THREADS=4, 1-recipient jobs,
# wrk -t2 -c64 -d10s --latency -s bench/post.lua, the server's CPU per 2xx answer.
# Rounds alternate the order (websmtpd first, then the original first, ...) so that a
# drift in the machine's load touches both; the summary gives each ratio's median and range.
if want compare; then
  FLOOR_OK=1
  build_floor || { FLOOR_OK=0; echo "bench: the empty Pistache handler did not build; no floor" >&2; }
  [[ -n $PEER_BIN ]] || echo "bench: no PEER_BIN: the comparison runs without the original" >&2
  CMP_LOAD0=$(cat /proc/loadavg)
  for ((R = 1; R <= ROUNDS; R++)); do
    if ((R % 2)); then ORDER=(websmtpd peer); else ORDER=(peer websmtpd); fi
    for MODE in live held; do
      for SRV in "${ORDER[@]}"; do
        [[ $SRV == peer && -z $PEER_BIN ]] && continue
        log "0. compare round $R/$ROUNDS: $SRV, THREADS=4, delivery $MODE, wrk -t2 -c64 -d${WRK_SECS}s"
        cmp_one "$R" "$SRV" "$MODE"
      done
    done
    if [[ $FLOOR_OK == 1 ]]; then
      log "0. compare round $R/$ROUNDS: empty Pistache handler, wrk -t2 -c64 -d${WRK_SECS}s"
      cmp_floor "$R"
    fi
  done
  $B compare-summary "$RUN_RESULTS" >"$WORK/compare.summary.json"
  record phase=compare_summary load="$(loadavg)" loadavg_before="$CMP_LOAD0" loadavg_after="$(cat /proc/loadavg)" \
    rounds="$ROUNDS" duration_s="$WRK_SECS" peer="${PEER_BIN:-}" summary=@"$WORK/compare.summary.json"
fi

# ==== 0b. /mail/batch: 100 one-recipient jobs per request, delivery held =====================
if want batch; then
  BATCH_N=100
  log "0b. /mail/batch, $BATCH_N jobs per request, THREADS=4, delivery held, wrk -t2 -c16 -d${WRK_SECS}s"
  start_sink batch
  kill -STOP "$SINK_PID"
  start_daemon batch 4 "$SINK_PORT" "$WORK/batch/data" SMTP_COMMAND_TIMEOUT=1h
  $B batch-body --n "$BATCH_N" >"$WORK/batch.body.json"
  PROBE=$($B probe --port "$D_PORT" --path /mail/batch --body-file "$WORK/batch.body.json") || PROBE="0 probe failed"
  CODE=${PROBE%% *}
  L=$(loadavg)
  if [[ $CODE == 404 ]]; then
    echo "   batch: skipped (no /mail/batch)" >&2
    record phase=batch load="$L" skipped="no /mail/batch"
  elif [[ $CODE != 202 ]]; then
    echo "   batch: skipped (the probe got: $PROBE)" >&2
    record phase=batch load="$L" skipped="probe answered: $PROBE"
  else
    Q0=$($B queue "$D_ADMIN" | $PY -c 'import json,sys;print(json.load(sys.stdin)["submitted_total"])') || Q0=0
    measure_wrk batch "$D_PID" 16 "$WRK_SECS" "http://127.0.0.1:$D_PORT/mail/batch" "$HERE/batch.lua" "$BATCH_N"
    Q1=$($B queue "$D_ADMIN" | $PY -c 'import json,sys;print(json.load(sys.stdin)["submitted_total"])') || Q1=$Q0
    alive "$D_PID" || echo "bench: websmtpd (batch) DIED during the measurement" >&2
    summary_line batch "/mail/batch (per request)"
    read -r JPS JPS_ADMIN < <($PY -c 'import json,sys
m=json.load(open(sys.argv[1])); w=m.get("wrk") or {}; d=(w.get("duration_us") or 0)/1e6; n=int(sys.argv[2])
print(round(n*m.get("accepted",0)/d,1) if d else 0, round((int(sys.argv[4])-int(sys.argv[3]))/d,1) if d else 0)' \
      "$WORK/batch.m.json" "$BATCH_N" "$Q0" "$Q1")
    echo "   batch: $JPS jobs/s accepted (wrk 2xx x $BATCH_N); /admin/queue submitted_total: $JPS_ADMIN jobs/s" >&2
    record phase=batch per="$BATCH_N" threads=4 conns=16 duration="${WRK_SECS}s" load="$L" m=@"$WORK/batch.m.json" \
      jobs_per_s="$JPS" jobs_per_s_admin="$JPS_ADMIN" submitted_delta="$((Q1 - Q0))" \
      server_died="$(alive "$D_PID" && echo false || echo true)"
  fi
  kill -CONT "$SINK_PID"
  stop_daemon batch
  stop_pid "$SINK_PID" TERM 5 || true
  [[ ${BENCH_KEEP:-0} == 1 ]] || rm -rf "$WORK/batch/data"
fi

# ==== 1. submit rate and latency =============================================================
# "4held": THREADS=4 with the sink SIGSTOPped while wrk runs, so the workers hold their
# first job and all CPU goes to accepting: the conditions of the Go seed's figure, whose
# workers sent 10 msg/s each. The backlog is delivered after wrk stops (and checked).
if want submit; then
  for T in 4 1 4held; do
    THREADS_N=${T%held}
    log "1. submit rate, THREADS=$THREADS_N$([[ $T == *held ]] && echo ', delivery held'), wrk -t2 -c64 -d$WRK_DUR"
    start_sink "submit$T"
    [[ $T == *held ]] && kill -STOP "$SINK_PID"
    start_daemon "submit$T" "$THREADS_N" "$SINK_PORT" "$WORK/submit$T/data"
    L=$(loadavg)
    wrk -t2 -c64 -d"$WRK_DUR" --latency -s "$HERE/post.lua" "http://127.0.0.1:$D_PORT/mail/send" >"$WORK/submit$T.wrk" 2>&1
    [[ $T == *held ]] && kill -CONT "$SINK_PID"
    cat "$WORK/submit$T.wrk" >&2
    $B wrkjson "$WORK/submit$T.wrk" >"$WORK/submit$T.wrk.json"
    $B queue "$D_ADMIN" >"$WORK/submit$T.qend.json"
    SUB=$($B queue "$D_ADMIN" | $PY -c 'import json,sys;print(json.load(sys.stdin)["submitted_total"])')
    $B drain --admin "$D_ADMIN" --target "$SUB" --t0 "$(now)" --timeout "$DRAIN_CAP_S" >"$WORK/submit$T.drain.json"
    $B proc "$D_PID" >"$WORK/submit$T.proc.json"
    stop_daemon "submit$T"
    record phase=submit threads="$THREADS_N" held="$([[ $T == *held ]] && echo true || echo false)" \
      duration="$WRK_DUR" load="$L" wrk=@"$WORK/submit$T.wrk.json" \
      queue_end=@"$WORK/submit$T.qend.json" drain=@"$WORK/submit$T.drain.json" proc=@"$WORK/submit$T.proc.json" \
      sink_msgs="$(sink_msgs "submit$T")" \
      target="$([[ $THREADS_N == 4 ]] && echo 'Go seed ~16k req/s, p99 ~100 ms' || echo 'Go seed ~24k req/s')"
    stop_pid "$SINK_PID" TERM 5 || true
  done
fi

# ==== 4. idle submit-to-delivered latency ====================================================
if want idle; then
  log "4. idle submit-to-delivered latency, THREADS=4, $LAT_JOBS sequential jobs"
  start_sink idle
  start_daemon idle 4 "$SINK_PORT" "$WORK/idle/data"
  L=$(loadavg)
  $B latency --port "$D_PORT" --n "$LAT_JOBS" --warmup 10 --timeout 120 >"$WORK/idle.lat.json"
  cat "$WORK/idle.lat.json" >&2
  stop_daemon idle
  record phase=idle_latency threads=4 load="$L" lat=@"$WORK/idle.lat.json" sink_msgs="$(sink_msgs idle)" \
    target="p50 <= 5 ms"
  stop_pid "$SINK_PID" TERM 5 || true
fi

# ==== 2. delivery rate ========================================================================
# 2a. live: submit N as fast as possible while 8 workers relay; time until all delivered.
if want delivery; then
  log "2a. delivery, live: submit $DELIV_JOBS jobs and deliver them, THREADS=8"
  start_sink live
  start_daemon live 8 "$SINK_PORT" "$WORK/live/data"
  L=$(loadavg)
  T0=$(now)
  # The poller runs during the submit (deliveries keep pace with it), every 100 ms, bounded.
  $B drain --admin "$D_ADMIN" --target 0 --min-submitted "$DELIV_JOBS" --t0 "$T0" --timeout "$DRAIN_CAP_S" \
    >"$WORK/live.drain.json" &
  POLLER=$!
  track "$POLLER"
  bounded_submit live "$DELIV_JOBS" 300
  wait "$POLLER" || true  # ends by itself within DRAIN_CAP_S
  untrack "$POLLER"
  cat "$WORK/live.drain.json" >&2
  stop_daemon live
  record phase=delivery_live threads=8 jobs="$DELIV_JOBS" load="$L" submit=@"$WORK/live.submit.json" \
    wrk=@"$WORK/live.wrk.json" drain=@"$WORK/live.drain.json" sink_msgs="$(sink_msgs live)" \
    target=">= 1.0x smtp-source -s 8"
  stop_pid "$SINK_PID" TERM 5 || true

  # 2b. drain: fill the store while the relay is frozen (SIGSTOP), kill -9, thaw, restart, time it.
  log "2b. delivery, drain of a stored queue: fill $DELIV_JOBS jobs, kill -9, restart THREADS=8"
  start_sink drain
  kill -STOP "$SINK_PID"
  start_daemon drainfill 8 "$SINK_PORT" "$WORK/drain/data" SMTP_COMMAND_TIMEOUT=1h
  bounded_submit drainfill "$DELIV_JOBS" 300
  $B queue "$D_ADMIN" >"$WORK/drainfill.q.json"
  STORED=$($PY -c 'import json,sys;print(json.load(open(sys.argv[1]))["submitted_total"])' "$WORK/drainfill.q.json")
  stop_pid "$D_PID" KILL 5 || true
  EXITS+=("drainfill:killed-9")
  kill -CONT "$SINK_PID"
  sleep 0.5
  start_daemon drain 8 "$SINK_PORT" "$WORK/drain/data"
  L=$(loadavg)
  $B drain --admin "$D_ADMIN" --target "$STORED" --t0 "$D_T0" --timeout "$DRAIN_CAP_S" >"$WORK/drain.drain.json"
  cat "$WORK/drain.drain.json" >&2
  stop_daemon drain
  record phase=delivery_drain threads=8 jobs="$DELIV_JOBS" stored="$STORED" load="$L" \
    startup_s="$($PY -c "print(round($D_READY-$D_T0,3))")" fill=@"$WORK/drainfill.submit.json" \
    drain=@"$WORK/drain.drain.json" sink_msgs="$(sink_msgs drain)" target=">= 1.0x smtp-source -s 8"
  stop_pid "$SINK_PID" TERM 5 || true

  # 2c. the reference: Postfix's smtp-source with 8 sessions into an identical fresh sink,
  #     as the issue runs it (a new connection per message), then with -d (the next message
  #     over the same connection, as websmtpd's workers do).
  run_source() {  # run_source NAME [extra smtp-source flags]
    local name=$1
    shift
    log "2c. smtp-source -s 8 -m $DELIV_JOBS $* into smtp-sink"
    start_sink "$name"
    local l s0 s1
    l=$(loadavg)
    s0=$(now)
    timeout 300 "$SOURCE" -s 8 "$@" -m "$DELIV_JOBS" -f bench@example.org -t rcpt@example.net "127.0.0.1:$SINK_PORT"
    s1=$(now)
    sleep 0.3
    record phase=smtp_source flags="$*" msgs="$DELIV_JOBS" load="$l" elapsed_s="$($PY -c "print(round($s1-$s0,3))")" \
      msg_per_s="$($PY -c "print(round($DELIV_JOBS/($s1-$s0),1))")" sink_msgs="$(sink_msgs "$name")" \
      target="$([[ $# -eq 0 ]] && echo '~6,300 msg/s (issue)' || echo '-')"
    stop_pid "$SINK_PID" TERM 5 || true
  }
  run_source source
  run_source source_d -d
  $PY - "$RUN_RESULTS" >"$WORK/ratio.json" <<'EOF2'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
by = {r["phase"]: r for r in recs}
src = {r.get("flags", ""): r["msg_per_s"] for r in recs if r["phase"] == "smtp_source"}
live = (by["delivery_live"].get("drain") or {}).get("msg_per_s") or 0
drain = (by["delivery_drain"].get("drain") or {}).get("msg_per_s") or 0
print(json.dumps({"live_ratio": round(live / src[""], 3), "drain_ratio": round(drain / src[""], 3),
                  "live_ratio_d": round(live / src["-d"], 3), "drain_ratio_d": round(drain / src["-d"], 3)}))
EOF2
  record phase=ratio load="$(loadavg)" ratios=@"$WORK/ratio.json" target=">= 1.0x smtp-source -s 8"
  $PY -c 'import json,sys; x=json.load(open(sys.argv[1]))
print("   delivery: drain %(drain_ratio_d)sx smtp-source -s 8 -d (live %(live_ratio_d)sx); "
      "drain %(drain_ratio)sx smtp-source -s 8 (live %(live_ratio)sx)" % x)' "$WORK/ratio.json" >&2 || true
fi

# ==== 3. RSS with a large queue ===============================================================
if want rss && [[ $RSS_JOBS -gt 0 ]]; then
  log "3. RSS with $RSS_JOBS jobs queued (relay frozen with SIGSTOP), THREADS=8"
  start_sink rss
  kill -STOP "$SINK_PID"
  start_daemon rss 8 "$SINK_PORT" "$WORK/rss/data" SMTP_COMMAND_TIMEOUT=1h
  $B sample --pid "$D_PID" --admin "$D_ADMIN" --out "$WORK/rss.samples.jsonl" --interval 5 --max $((RSS_CAP_S + 120)) &
  SAMPLER=$!
  track "$SAMPLER"
  L=$(loadavg)
  bounded_submit rss "$RSS_JOBS" "$RSS_CAP_S"
  $B proc "$D_PID" >"$WORK/rss.proc_now.json"
  sleep 5  # let the store writer settle, then read again
  $B queue "$D_ADMIN" >"$WORK/rss.q.json"
  $B proc "$D_PID" >"$WORK/rss.proc.json"
  cat "$WORK/rss.q.json" "$WORK/rss.proc.json" >&2
  DB_MIB=$(du -sm "$WORK/rss/data" | cut -f1)
  stop_pid "$SAMPLER" TERM 5 || true
  stop_daemon rss
  record phase=rss threads=8 jobs="$RSS_JOBS" load="$L" submit=@"$WORK/rss.submit.json" wrk=@"$WORK/rss.wrk.json" \
    queue=@"$WORK/rss.q.json" proc=@"$WORK/rss.proc.json" proc_at_submit_end=@"$WORK/rss.proc_now.json" \
    db_mib="$DB_MIB" target="RSS <= 64 MB with 1M queued"
  cp "$WORK/rss.samples.jsonl" "$LOGS/" || true
  stop_pid "$SINK_PID" KILL 5 || true
fi

# ==== daemon health over the whole run ========================================================
HEALTH=$($PY - "${DAEMON_LOGS[@]}" <<'EOF'
import re, sys
tot = {"warning": 0, "error": 0, "critical": 0}
first = []
for p in sys.argv[1:]:
    for line in open(p, errors="replace"):
        m = re.search(r" (warning|error|critical) ", line)
        if m:
            tot[m.group(1)] += 1
            if len(first) < 3:
                first.append(line.strip()[:200])
print(f"log lines: {tot['warning']} warning, {tot['error']} error, {tot['critical']} critical" +
      (("; first: " + " | ".join(first)) if first else ""))
EOF
)
record phase=daemon_health load="$(loadavg)" summary="$HEALTH; exits: ${EXITS[*]}"
for f in "${DAEMON_LOGS[@]}"; do cp "$f" "$LOGS/$(basename "$(dirname "$f")").daemon.log"; done
for f in "${PEER_LOGS[@]}"; do cp "$f" "$LOGS/$(basename "$(dirname "$f")").peer.log"; done
cp "$WORK"/*.wrk "$WORK"/*.json "$LOGS/" 2>/dev/null || true
cp "$RUN_RESULTS" "$LOGS/results.jsonl"

$B table "$RUN_RESULTS"
echo "results appended to $OUT/results.jsonl; logs in $LOGS" >&2
