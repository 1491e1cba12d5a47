#!/usr/bin/python3
"""Several websmtpd nodes on one PostgreSQL against one node, and against SQLite (bench/cluster.sh).

One run starts a throwaway PostgreSQL 15 (tests/support/postgres.py: initdb in a temp dir, a free
port on 127.0.0.1, run as an unprivileged user) and measures, side by side, four set-ups:

    sqlite x1    one websmtpd, STORE=sqlite (the default)
    before x1    with --before BINARY: one node of that (older) websmtpd on SQLite, the same driver:
                 the SQLite path against a build from before a change
    pg x1        one websmtpd, STORE=postgres
    pg x2, pg x3 two and three websmtpd nodes on the same database

Each measurement gets a fresh Postfix smtp-sink as the relay, fresh nodes (THREADS workers each)
and a fresh store (SQLite: a new DATA_DIR; PostgreSQL: the schema dropped, the first node creates
it again). One wrk process submits JOBS one-recipient jobs to /mail/send (bench/post.lua) with
WRK_THREADS threads, the threads spread round-robin over the nodes (thread i connects to node
i mod N), so the client is the same for every set-up. Measured:

  submit   jobs / (time from wrk's start until the nodes' submitted_total, summed, reaches JOBS);
           wrk then gets SIGINT (a few requests already in flight still land: every figure uses
           the nodes' own counts)
  delivery jobs / (time from wrk's start until /admin/queue of node 0 counts every submitted job
           completed or failed; on PostgreSQL those figures are the whole gateway's)

plus the sink's message count (every job must arrive exactly once: sink messages = submitted),
each node's share of the deliveries, the CPU seconds of the nodes, of PostgreSQL (postmaster and
its backends) and of the whole machine, and the load average before and after. /admin/queue is
polled every POLL_S seconds, every wait is bounded, every process is stopped by its PID.

Rounds run the set-ups in ABBA order (sqlite, pg x1, pg x2, pg x3; then the reverse) so a drift in
the machine's load touches all alike; ratios are per round: pg x2 / pg x1, pg x3 / pg x1,
pg x1 / sqlite x1 and sqlite x1 / before x1.

    bench/cluster.sh [--jobs 5000] [--rounds 2] [--threads 4] [--wrk-threads 6] [--conns 96]
                     [--before OLD_WEBSMTPD]

One JSON line per measurement is appended to bench/out/results.jsonl (phase "cluster").
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "tests", "support"))
import postgres  # noqa: E402
from bench import alive, free_port, get_json  # noqa: E402
from mx import SINK, Daemon, Sink, cpu_seconds, loadavg, stop  # noqa: E402

WRK = "/usr/bin/wrk"
POLL_S = 0.025
SETUPS = [("sqlite", 1), ("pg", 1), ("pg", 2), ("pg", 3)]


def machine_busy_s():
    """CPU seconds the whole machine spent busy (all CPUs, not idle or iowait), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def pg_cpu_s(pid):
    """CPU seconds of the postmaster, the children it has reaped and its live backends."""
    tck = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid:
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        elif int(fields[1]) == pid:
            total += int(fields[11]) + int(fields[12])
    return total / tck


def wrk_script(work, name, ports):
    """bench/post.lua, with a setup() that sends wrk's thread i to node i mod N."""
    path = os.path.join(work, f"{name}.lua")
    with open(path, "w") as f:
        f.write(f'dofile("{os.path.join(HERE, "post.lua")}")\n'
                f'local ports = {{{", ".join(str(p) for p in ports)}}}\n'
                'local n = 0\n'
                'function setup(thread)\n'
                '  thread.addr = wrk.lookup("127.0.0.1", tostring(ports[n % #ports + 1]))[1]\n'
                '  n = n + 1\n'
                'end\n')
    return path


def wrk_json(path):
    try:
        with open(path, errors="replace") as f:
            m = re.search(r"^WRKJSON (\{.*\})$", f.read(), re.M)
        return json.loads(m.group(1)) if m else {}
    except (OSError, ValueError):
        return {}


def own(q, field):
    """This node's own `field` (submitted_total, delivered_total): on PostgreSQL /admin/queue gives
    the gateway's sums, and the answering node's live figures in its `nodes` entry."""
    for n in q.get("nodes", []):
        if n.get("self"):
            return n[field]
    return q[field]


CGROUP_V1_CPU = "/sys/fs/cgroup/cpu"


def cap_cpu(pid, name, cpus):
    """Moves process `pid` (every thread) into a cgroup of its own allowed `cpus` CPUs (cgroup v2
    cpu.max, or v1 cfs quota): a node capped so stands in for a node on a small machine of its
    own. Returns the cgroup's path (removed by uncap)."""
    period = 100_000
    quota = int(cpus * period)
    v2 = "/sys/fs/cgroup"
    if os.path.exists(os.path.join(v2, "cgroup.controllers")) and os.path.exists(os.path.join(v2, "cgroup.procs")):
        path = os.path.join(v2, f"websmtp-bench-{name}")
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "cpu.max"), "w") as f:
            f.write(f"{quota} {period}")
    elif os.path.isdir(CGROUP_V1_CPU):
        path = os.path.join(CGROUP_V1_CPU, f"websmtp-bench-{name}")
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "cpu.cfs_period_us"), "w") as f:
            f.write(str(period))
        with open(os.path.join(path, "cpu.cfs_quota_us"), "w") as f:
            f.write(str(quota))
    else:
        sys.exit("bench/cluster: --node-cpu needs a writable cgroup cpu controller (run as root)")
    with open(os.path.join(path, "cgroup.procs"), "w") as f:
        f.write(str(pid))
    return path


def uncap(path):
    try:
        os.rmdir(path)  # empty once its process exited
    except OSError:
        pass


def node_env(store, i, sink_port, a, pg):
    env = {"DELIVERY": "relay", "SMTP_SERVER": "127.0.0.1", "SMTP_PORT": sink_port, "SMTP_TLS": "none",
           "THREADS": a.threads}
    if store in ("pg", "pgbefore"):
        env.update(STORE="postgres", DATABASE_URL=pg.url, NODE_ID=f"node{i}")
    return env


def run_setup(store, nnodes, a, work, pg, round_no):
    name = f"{store}{nnodes}-r{round_no}"
    sink_port = free_port()
    sink = Sink("127.0.0.1", sink_port, work)
    nodes, wrk, cgroups = [], None, []
    try:
        if store in ("pg", "pgbefore"):
            pg.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        for i in range(nnodes):  # one after the other: the first creates the schema
            binary = a.before if store in ("before", "pgbefore") else a.websmtpd
            nodes.append(Daemon(binary, work, f"{name}-n{i}", node_env(store, i, sink_port, a, pg)))
            if a.node_cpu:
                cgroups.append(cap_cpu(nodes[-1].proc.pid, f"{name}-n{i}", a.node_cpu))
        holders = [{} for _ in nodes]

        def queue(k):
            st, q = get_json(holders[k], "127.0.0.1", nodes[k].admin, "/admin/queue")
            if st != 200:
                raise RuntimeError(f"/admin/queue of node {k} answered {st}")
            return q

        script = wrk_script(work, name, [n.port for n in nodes])
        wrk_out = os.path.join(work, f"{name}.wrk")
        load_before = loadavg()
        cpu0 = [cpu_seconds(n.proc.pid) for n in nodes]
        pg0 = pg_cpu_s(pg.pid) if store in ("pg", "pgbefore") else None
        busy0 = machine_busy_s()
        deadline = time.monotonic() + a.timeout
        t0 = time.time()
        with open(wrk_out, "wb") as out:
            wrk = subprocess.Popen([WRK, f"-t{a.wrk_threads}", f"-c{a.conns}", f"-d{int(a.timeout)}s", "--latency",
                                    "-s", script, f"http://127.0.0.1:{nodes[0].port}/mail/send", "--", str(a.jobs),
                                    str(a.wrk_threads)], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        t_submit = t_done = None
        submitted = finished = 0
        polls = 0
        while time.monotonic() < deadline:
            polls += 1
            wrk_running = wrk.poll() is None
            submitted = sum(own(queue(k), "submitted_total") for k in range(len(nodes)))
            if t_submit is None and submitted >= a.jobs:
                t_submit = time.time()
                submit_seen = submitted
                if wrk_running:
                    wrk.send_signal(signal.SIGINT)
            if t_submit is None and not wrk_running:
                raise RuntimeError(f"wrk ended after {submitted} jobs; see {wrk_out}")
            q0 = queue(0)
            finished = q0["completed"] + q0["failed"]
            if t_submit is not None and not wrk_running and finished >= submitted:
                t_done = time.time()
                break
            time.sleep(POLL_S)
        t_end = time.time()
        busy = machine_busy_s() - busy0
        cpu = [round(cpu_seconds(n.proc.pid) - c, 2) if alive(n.proc.pid) else None for n, c in zip(nodes, cpu0)]
        pg_cpu = round(pg_cpu_s(pg.pid) - pg0, 2) if pg0 is not None else None
        load_after = loadavg()
        stop(wrk, signal.SIGINT, 10)
        per_node = [queue(k) for k in range(len(nodes))]
        exits = [n.stop() for n in nodes]
        nodes = []
        time.sleep(0.2)  # smtp-sink prints its -c counter when a session ends
        counts = sink.counts()
        w = wrk_json(wrk_out)
        return {
            "store": store, "nodes": nnodes, "round": round_no, "jobs": a.jobs, "threads": a.threads,
            "wrk_threads": a.wrk_threads, "conns": a.conns, "done": t_done is not None,
            "submitted": submitted, "finished": finished,
            "submit_s": round(t_submit - t0, 3) if t_submit else None,
            "submit_per_s": round(submit_seen / (t_submit - t0), 1) if t_submit else None,
            "delivery_s": round(t_done - t0, 3) if t_done else None,
            "delivery_per_s": round(submitted / (t_done - t0), 1) if t_done else None,
            "wrk": w, "sink_messages": counts.get("mesg"), "sink_sessions": counts.get("sess"),
            "delivered_by_node": [own(q, "delivered_total") for q in per_node],
            "submitted_by_node": [own(q, "submitted_total") for q in per_node],
            "cpu_s_nodes": cpu, "cpu_s_postgres": pg_cpu, "cpu_s_machine": round(busy, 2),
            "elapsed_s": round(t_end - t0, 3), "polls": polls, "load_before": load_before, "load_after": load_after,
            "exit_codes": exits,
        }
    finally:
        if wrk is not None and wrk.poll() is None:
            stop(wrk, signal.SIGINT, 10)
        for n in nodes:
            n.stop()
        for path in cgroups:
            uncap(path)
        sink.stop()


def label(res):
    return f"{res['store']} x{res['nodes']}"


def ratios(results, rounds, field):
    """Per round: pg x2 / pg x1, pg x3 / pg x1, pg x1 / sqlite x1, sqlite x1 / before x1 and
    pg x1 / pgbefore x1 of `field`."""
    pairs = [("pg x2", "pg x1"), ("pg x3", "pg x1"), ("pg x1", "sqlite x1"), ("sqlite x1", "before x1"),
             ("pg x1", "pgbefore x1")]
    out = {f"{num} / {den}": [] for num, den in pairs}
    for r in range(1, rounds + 1):
        by = {label(x): x.get(field) for x in results if x["round"] == r}
        for num, den in pairs:
            if by.get(num) and by.get(den):
                out[f"{num} / {den}"].append(round(by[num] / by[den], 3))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=4, help="THREADS (delivery workers) of each node")
    p.add_argument("--wrk-threads", type=int, default=6, help="wrk threads, spread round-robin over the nodes")
    p.add_argument("--conns", type=int, default=96, help="wrk connections in all")
    p.add_argument("--timeout", type=float, default=300.0, help="cap on one measurement's submit and delivery, s")
    p.add_argument("--websmtpd", default=os.environ.get("WEBSMTPD",
                                                         os.path.join(REPO, "build/release/apps/websmtpd/websmtpd")))
    p.add_argument("--before", help="an older websmtpd binary: also run it as one SQLite node and one PostgreSQL "
                                    "node (set-ups 'before x1', 'pgbefore x1')")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    p.add_argument("--node-cpu", type=float, default=0.0,
                   help="cap each websmtpd node at this many CPUs (a cgroup of its own, as root): nodes then stand in "
                        "for nodes on machines of their own, PostgreSQL and the load generator having the rest")
    p.add_argument("--pg-stats", action="store_true",
                   help="after each PostgreSQL set-up, print its 8 costliest statements (pg_stat_statements)")
    p.add_argument("--setups", default=",".join(f"{s}{n}" for s, n in SETUPS),
                   help="which set-ups to run, comma-separated (default: %(default)s)")
    a = p.parse_args()
    a.websmtpd = os.path.abspath(a.websmtpd)
    a.before = os.path.abspath(a.before) if a.before else None
    if not (1 <= a.jobs <= 1_000_000 and 1 <= a.rounds <= 20 and 1 <= a.threads <= 64
            and 1 <= a.wrk_threads <= 64 and a.wrk_threads <= a.conns <= 1000):
        sys.exit("bench/cluster: --jobs 1..1e6, --rounds 1..20, --threads 1..64, --wrk-threads 1..64, "
                 "--conns wrk-threads..1000")
    chosen = [(s, n) for s, n in SETUPS if f"{s}{n}" in a.setups.split(",")]
    if not chosen:
        sys.exit(f"bench/cluster: --setups names none of {', '.join(f'{s}{n}' for s, n in SETUPS)}")
    for tool in (a.websmtpd, SINK, WRK) + ((a.before,) if a.before else ()):
        if not os.access(tool, os.X_OK):
            sys.exit(f"bench/cluster: missing {tool} (make build; apt-get install -y postfix wrk)")
    if not postgres.available():
        sys.exit("bench/cluster: PostgreSQL 15 is not installed (apt-get install -y postgresql)")
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    work = tempfile.mkdtemp(prefix="websmtp-bench-cluster.")
    out_dir = os.path.join(HERE, "out")
    os.makedirs(out_dir, exist_ok=True)
    results = []
    binaries = a.websmtpd + (f" (before: {a.before})" if a.before else "")
    print(f"bench/cluster {run_id}: {binaries}, {a.jobs} jobs per measurement, THREADS={a.threads} per node, "
          f"wrk -t{a.wrk_threads} -c{a.conns}, {os.cpu_count()} CPUs, load {loadavg()}"
          + (f", each node capped at {a.node_cpu} CPU" if a.node_cpu else ""), file=sys.stderr)
    pg = postgres.PostgresServer(extra_opts="-c shared_preload_libraries=pg_stat_statements" if a.pg_stats else "")
    try:
        pg.start()
        setups = ([("before", 1), ("pgbefore", 1)] if a.before else []) + chosen
        for r in range(1, a.rounds + 1):
            for store, n in (setups if r % 2 else setups[::-1]):
                print(f"== round {r}/{a.rounds}: {store} x{n} [load {loadavg()}]", file=sys.stderr)
                if a.pg_stats and store != "sqlite":
                    pg.psql("CREATE SCHEMA IF NOT EXISTS diag; CREATE EXTENSION IF NOT EXISTS pg_stat_statements "
                            "SCHEMA diag; SELECT diag.pg_stat_statements_reset()")
                res = run_setup(store, n, a, work, pg, r)
                if a.pg_stats and store != "sqlite":
                    print(pg.psql("SELECT round(total_exec_time)::text || ' ms ' || calls || ' calls ' || "
                                  "left(regexp_replace(query, '\\s+', ' ', 'g'), 110) FROM diag.pg_stat_statements "
                                  "ORDER BY total_exec_time DESC LIMIT 8"), file=sys.stderr)
                res.update(run=run_id, phase="cluster", time=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           host=socket.gethostname(), cpus=os.cpu_count())
                print("   " + json.dumps({k: res[k] for k in ("submit_per_s", "delivery_per_s", "submitted",
                                                               "sink_messages", "delivered_by_node", "cpu_s_nodes",
                                                               "cpu_s_postgres", "load_before")}), file=sys.stderr)
                results.append(res)
                with open(os.path.join(out_dir, "results.jsonl"), "a") as f:
                    f.write(json.dumps(res) + "\n")
    finally:
        pg.cleanup()
        if a.keep:
            print(f"bench/cluster: work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, True)
    print(f"\n{'round':>5} {'set-up':>9} {'submit/s':>9} {'p99 ms':>7} {'deliv/s':>8} {'submitted':>9} "
          f"{'at sink':>7} {'cpu s nodes':>14} {'cpu s pg':>8} {'cpu s all':>9}  "
          "delivered by node; load before -> after")
    for x in results:
        p99 = x["wrk"].get("p99_us")
        print(f"{x['round']:>5} {label(x):>9} {x['submit_per_s'] or '-':>9} {round(p99 / 1000, 1) if p99 else '-':>7} "
              f"{x['delivery_per_s'] or '-':>8} {x['submitted']:>9} {x['sink_messages'] or 0:>7} "
              f"{'+'.join(str(c) for c in x['cpu_s_nodes']):>14} {x['cpu_s_postgres'] or '-':>8} "
              f"{x['cpu_s_machine']:>9}  {x['delivered_by_node']}; {x['load_before']} -> {x['load_after']}")
    for field, what in (("submit_per_s", "submit"), ("delivery_per_s", "delivery")):
        for key, vals in ratios(results, a.rounds, field).items():
            if vals:
                print(f"{what:>8} {key}: {sum(vals) / len(vals):.2f}x (per round: "
                      f"{', '.join(f'{v:.2f}x' for v in vals)})")
    print(f"load average at the end: {loadavg()}")
    ok = all(x["done"] and x["sink_messages"] == x["submitted"] for x in results)
    if not ok:
        print("bench/cluster: a measurement did not finish, or the sink's count differs from the jobs submitted",
              file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
