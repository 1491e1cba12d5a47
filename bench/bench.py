#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only; run with Debian's /usr/bin/python3).

Every loop here is bounded in time. Subcommands print JSON (or plain words) on stdout.
"""
import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def get_json(conn_holder, host, port, path, timeout=5.0):
    """GET path over a kept-alive connection (reconnects once on failure)."""
    for attempt in range(2):
        conn = conn_holder.get("c")
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            conn_holder["c"] = conn
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            return r.status, json.loads(body) if body else None
        except (OSError, http.client.HTTPException, ValueError):
            conn.close()
            conn_holder["c"] = None
            if attempt == 1:
                raise
    raise RuntimeError("unreachable")


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "VmHWM", "VmSize", "Threads"):
                    v = v.strip().split()[0]
                    out[k] = int(v)
    except OSError:
        pass
    if "VmRSS" in out:
        out["VmRSS_MiB"] = round(out["VmRSS"] / 1024, 1)
    if "VmHWM" in out:
        out["VmHWM_MiB"] = round(out["VmHWM"] / 1024, 1)
    return out


def cmd_freeport(a):
    print(free_port())


def cmd_wait_port(a):
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        if a.pid and not alive(a.pid):
            sys.exit(f"process {a.pid} exited before listening on {a.port}")
        try:
            with socket.create_connection(("127.0.0.1", a.port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on 127.0.0.1:{a.port} after {a.timeout}s")


def cmd_wait_ready(a):
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        if not alive(a.pid):
            sys.exit(f"websmtpd (pid {a.pid}) exited during start")
        try:
            with open(a.file) as f:
                r = json.load(f)
            print(r["pid"], r["port"], r["admin_port"])
            return
        except (OSError, ValueError, KeyError):
            time.sleep(0.02)
    sys.exit(f"no ready file {a.file} after {a.timeout}s")


def cmd_queue(a):
    h = {}
    st, q = get_json(h, "127.0.0.1", a.admin, "/admin/queue")
    if st != 200:
        sys.exit(f"/admin/queue answered {st}")
    print(json.dumps(q))


def cmd_proc(a):
    print(json.dumps(proc_status(a.pid)))


def cmd_stop_wrk_at(a):
    """Poll submitted_total; SIGINT wrk (which then prints its summary) once it reaches target."""
    t0 = a.t0
    h = {}
    deadline = time.monotonic() + a.timeout
    reached = None
    last = 0
    err = None
    while time.monotonic() < deadline and alive(a.wrk):
        try:
            st, q = get_json(h, "127.0.0.1", a.admin, "/admin/queue")
            last = q["submitted_total"]
        except Exception as e:  # daemon gone or hung: stop wrk, report it
            err = repr(e)
            break
        if last >= a.target:
            reached = time.time()
            break
        time.sleep(a.interval)
    if alive(a.wrk):
        os.kill(a.wrk, signal.SIGINT)
    out = {"target": a.target, "submitted_seen": last, "reached": reached is not None}
    if reached is not None:
        out["submit_s"] = round(reached - t0, 3)
        out["submit_rps"] = round(last / (reached - t0), 1)
    if err:
        out["error"] = err
    print(json.dumps(out))


def cmd_drain(a):
    """Poll /admin/queue every interval until delivered+failed >= target (or timeout).

    With --min-submitted M (run concurrently with a submit): until submitted_total >= M and
    every submitted job is delivered or failed."""
    h = {}
    deadline = time.monotonic() + a.timeout
    first = None
    q = None
    done = False
    err = None
    polls = 0
    while time.monotonic() < deadline:
        try:
            st, q = get_json(h, "127.0.0.1", a.admin, "/admin/queue")
        except Exception as e:
            err = repr(e)
            break
        polls += 1
        if first is None:
            first = dict(q, t=round(time.time() - a.t0, 3))
        finished = q["delivered_total"] + q["failed_total"]
        if a.min_submitted:
            # submit still running: done once it has reached min_submitted and all are finished
            if q["submitted_total"] >= a.min_submitted and finished >= q["submitted_total"]:
                done = True
                break
        elif finished >= a.target:
            done = True
            break
        time.sleep(a.interval)
    t = time.time() - a.t0
    out = {"target": a.target, "done": done, "elapsed_s": round(t, 3), "polls": polls, "first": first, "last": q}
    if q:
        out["msg_per_s"] = round(q["delivered_total"] / t, 1) if t > 0 else None
    if err:
        out["error"] = err
    print(json.dumps(out))


def cmd_sample(a):
    """Background sampler: RSS and queue size every interval, as JSON lines, until pid exits."""
    h = {}
    deadline = time.monotonic() + a.max
    t0 = time.time()
    with open(a.out, "a") as f:
        while time.monotonic() < deadline and alive(a.pid):
            row = {"t": round(time.time() - t0, 1)}
            row.update(proc_status(a.pid))
            try:
                _, q = get_json(h, "127.0.0.1", a.admin, "/admin/queue", timeout=2)
                row["queued"] = q["queued"]
                row["submitted_total"] = q["submitted_total"]
            except Exception as e:
                row["queue_error"] = repr(e)
            f.write(json.dumps(row) + "\n")
            f.flush()
            time.sleep(a.interval)


BODY = json.dumps({"from": "bench@example.org", "to": ["rcpt@example.net"], "subject": "bench", "body": "hello"})


def cmd_wait_http(a):
    """Poll GET path until it answers 200 (the original websmtp's readiness: GET /status)."""
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        if a.pid and not alive(a.pid):
            sys.exit(f"process {a.pid} exited before answering GET {a.path} on {a.port}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=1)
            c.request("GET", a.path)
            r = c.getresponse()
            r.read()
            c.close()
            if r.status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.05)
    sys.exit(f"GET {a.path} on 127.0.0.1:{a.port} did not answer 200 after {a.timeout}s")


def cmd_wait_portfile(a):
    """Wait for a file holding a port number (bench/floor/empty_handler writes one)."""
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline:
        if not alive(a.pid):
            sys.exit(f"process {a.pid} exited during start")
        try:
            with open(a.file) as f:
                port = int(f.read().strip())
            print(port)
            return
        except (OSError, ValueError):
            time.sleep(0.02)
    sys.exit(f"no port file {a.file} after {a.timeout}s")


def cpu_ticks(pid):
    """utime+stime of a process (all its threads), in clock ticks; None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def machine_ticks():
    """(busy, total) clock ticks of the whole machine from /proc/stat (busy = not idle/iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4], sum(v)


def cmd_measure(a):
    """Run wrk (the arguments after --) against a server and measure CPU around it.

    Prints one JSON object: the WRKJSON summary of the wrk script, accepted (2xx) responses,
    the server's CPU (utime+stime delta of --pid over the wrk run) and CPU per accepted
    request in microseconds, wrk's own CPU (rusage), the CPU of --also processes (the sink),
    and the machine's busy CPU over the same interval; "other_cpu_s" is what the machine spent
    on anything else (other users' work), a measure of interference."""
    if a.wrk and a.wrk[0] == "--":
        a.wrk = a.wrk[1:]
    hz = os.sysconf("SC_CLK_TCK")
    also = [p for p in (a.also or []) if p]
    s0 = cpu_ticks(a.pid)
    o0 = {p: cpu_ticks(p) for p in also}
    m0 = machine_ticks()
    la0 = open("/proc/loadavg").read().split()[:3]
    t0 = time.monotonic()
    with open(a.log, "w") as log:
        wrk = subprocess.Popen(a.wrk, stdout=log, stderr=subprocess.STDOUT)

        def stop(signum, frame):  # run.sh's cleanup ends us: end wrk first
            try:
                wrk.kill()
            except OSError:
                pass
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        timed_out = False
        while True:
            pid, status, ru = os.wait4(wrk.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - t0 > a.timeout:
                timed_out = True
                wrk.kill()
                pid, status, ru = os.wait4(wrk.pid, 0)
                break
            time.sleep(0.02)
        wrk.returncode = 0  # reaped here; keep Popen from waiting again
    elapsed = time.monotonic() - t0
    s1 = cpu_ticks(a.pid)
    o1 = {p: cpu_ticks(p) for p in also}
    m1 = machine_ticks()
    la1 = open("/proc/loadavg").read().split()[:3]
    res = {}
    with open(a.log) as f:
        for line in f:
            if line.startswith("WRKJSON "):
                res = json.loads(line[len("WRKJSON "):])
    out = {"wrk": res, "elapsed_s": round(elapsed, 3), "wrk_exit": os.waitstatus_to_exitcode(status),
           "timed_out": timed_out, "loadavg_before": " ".join(la0), "loadavg_after": " ".join(la1)}
    if res:
        accepted = res["requests"] - res["non2xx"]
        out["accepted"] = accepted
        out["rps_2xx"] = round(accepted / (res["duration_us"] / 1e6), 1) if res["duration_us"] else None
    if s0 is not None and s1 is not None:
        cpu = (s1 - s0) / hz
        out["server_cpu_s"] = round(cpu, 3)
        out["server_cpu_pct"] = round(100 * cpu / elapsed, 1)
        if out.get("accepted"):
            out["cpu_us_per_req"] = round(cpu * 1e6 / out["accepted"], 2)
    ours = (s1 - s0) / hz if s0 is not None and s1 is not None else 0.0
    wrk_cpu = ru.ru_utime + ru.ru_stime
    out["wrk_cpu_s"] = round(wrk_cpu, 3)
    ours += wrk_cpu
    also_cpu = 0.0
    for p in also:
        if o0.get(p) is not None and o1.get(p) is not None:
            also_cpu += (o1[p] - o0[p]) / hz
    out["also_cpu_s"] = round(also_cpu, 3)
    ours += also_cpu
    busy = (m1[0] - m0[0]) / hz
    out["machine_busy_s"] = round(busy, 3)
    out["machine_busy_pct"] = round(100 * busy / elapsed, 1)  # of one CPU; nproc CPUs = nproc x 100
    out["other_cpu_s"] = round(max(busy - ours, 0.0), 3)
    print(json.dumps(out))


def cmd_probe(a):
    """POST a body once; print the status code (0 when the connection failed)."""
    body = open(a.body_file, "rb").read()
    try:
        c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
        c.request("POST", a.path, body=body, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        data = r.read()
        c.close()
        print(r.status, data[:200].decode(errors="replace").replace("\n", " "))
    except (OSError, http.client.HTTPException) as e:
        print(0, repr(e))


def batch_body(n):
    return json.dumps({"jobs": [json.loads(BODY)] * n}, separators=(",", ":"))


def cmd_batch_body(a):
    print(batch_body(a.n))


def median(vals):
    v = sorted(vals)
    if not v:
        return None
    m = len(v) // 2
    return v[m] if len(v) % 2 else (v[m - 1] + v[m]) / 2


def compare_rows(recs):
    """Per-round ratios of the comparison phase, with their median and range."""
    by = {}
    for r in recs:
        if r.get("phase") == "compare" and not r.get("server_died"):
            by[(r["round"], r["server"], r.get("mode"))] = r.get("m") or {}
    rounds = sorted({k[0] for k in by})
    keys = {
        "rps_live": ("websmtpd", "live", "peer", "live", "rps_2xx"),
        "rps_held": ("websmtpd", "held", "peer", "held", "rps_2xx"),
        "p99_live": ("websmtpd", "live", "peer", "live", "p99_us"),
        "p99_held": ("websmtpd", "held", "peer", "held", "p99_us"),
        "cpu_held_vs_floor": ("websmtpd", "held", "floor", "floor", "cpu_us_per_req"),
        "cpu_live_vs_floor": ("websmtpd", "live", "floor", "floor", "cpu_us_per_req"),
        "peer_cpu_held_vs_floor": ("peer", "held", "floor", "floor", "cpu_us_per_req"),
    }
    per_round = {k: [] for k in keys}
    for rd in rounds:
        for k, (s1, m1, s2, m2, f) in keys.items():
            a = by.get((rd, s1, m1), {})
            b = by.get((rd, s2, m2), {})
            va = a.get(f) if f != "p99_us" else (a.get("wrk") or {}).get("p99_us")
            vb = b.get(f) if f != "p99_us" else (b.get("wrk") or {}).get("p99_us")
            if va and vb:
                per_round[k].append(round(va / vb, 3))
    out = {"rounds": len(rounds)}
    for k, v in per_round.items():
        out[k] = {"median": round(median(v), 3) if v else None, "min": min(v) if v else None,
                  "max": max(v) if v else None, "per_round": v}
    # Interference: the share of the machine's CPU time that went to work other than the
    # server, wrk and the sink (other users, builds) during each measurement.
    ncpu = os.cpu_count() or 1
    other = [100 * m["other_cpu_s"] / (ncpu * m["elapsed_s"]) for m in by.values()
             if m.get("other_cpu_s") is not None and m.get("elapsed_s")]
    out["other_work_pct"] = {"median": round(median(other), 1) if other else None,
                             "max": round(max(other), 1) if other else None}
    # medians of the raw figures, for the table
    raw = {}
    for (rd, srv, mode), m in by.items():
        raw.setdefault(f"{srv}_{mode}", []).append(m)
    out["raw"] = {}
    for name, ms in raw.items():
        out["raw"][name] = {
            "rps_2xx": median([m.get("rps_2xx") for m in ms if m.get("rps_2xx") is not None]),
            "p50_us": median([(m.get("wrk") or {}).get("p50_us") for m in ms if (m.get("wrk") or {}).get("p50_us") is not None]),
            "p99_us": median([(m.get("wrk") or {}).get("p99_us") for m in ms if (m.get("wrk") or {}).get("p99_us") is not None]),
            "cpu_us_per_req": median([m.get("cpu_us_per_req") for m in ms if m.get("cpu_us_per_req") is not None]),
            "non2xx": sum((m.get("wrk") or {}).get("non2xx", 0) for m in ms),
            "n": len(ms),
        }
    return out


def cmd_compare_summary(a):
    with open(a.file) as f:
        recs = [json.loads(l) for l in f if l.strip()]
    print(json.dumps(compare_rows(recs)))


def percentile(sorted_vals, p):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def cmd_latency(a):
    """Sequential jobs: POST, then GET the status with no sleep until completed."""
    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
    hdrs = {"Content-Type": "application/json"}
    lat = []
    polls = []
    errors = []
    deadline = time.monotonic() + a.timeout
    for i in range(a.warmup + a.n):
        if time.monotonic() > deadline:
            errors.append("phase time limit reached")
            break
        t0 = time.perf_counter()
        conn.request("POST", "/mail/send", body=BODY, headers=hdrs)
        r = conn.getresponse()
        body = r.read()
        if r.status != 202:
            errors.append(f"POST {r.status} {body[:200]!r}")
            continue
        ref = json.loads(body)["ref"]
        n = 0
        ok = False
        job_deadline = time.monotonic() + 10
        while time.monotonic() < job_deadline:
            conn.request("GET", "/mail/status/" + ref)
            r = conn.getresponse()
            body = r.read()
            n += 1
            if r.status != 200:
                errors.append(f"GET status {r.status} {body[:200]!r}")
                break
            s = json.loads(body)
            if s["status"] == "completed":
                ok = s["recipients"][0]["state"] == "delivered"
                if not ok:
                    errors.append(f"job {ref} completed but {s['recipients'][0]}")
                break
        else:
            errors.append(f"job {ref} not completed after 10 s")
        dt = (time.perf_counter() - t0) * 1000.0
        if i >= a.warmup and ok:
            lat.append(dt)
            polls.append(n)
    lat.sort()
    out = {
        "jobs": len(lat),
        "p50_ms": round(percentile(lat, 50), 3) if lat else None,
        "p90_ms": round(percentile(lat, 90), 3) if lat else None,
        "p99_ms": round(percentile(lat, 99), 3) if lat else None,
        "max_ms": round(lat[-1], 3) if lat else None,
        "min_ms": round(lat[0], 3) if lat else None,
        "mean_polls": round(sum(polls) / len(polls), 1) if polls else None,
        "errors": errors[:20],
        "error_count": len(errors),
    }
    print(json.dumps(out))


def cmd_wrkjson(a):
    """Extract the WRKJSON line printed by post.lua's done() (and wrk's own Non-2xx line)."""
    res = None
    non2xx_text = 0
    with open(a.file) as f:
        for line in f:
            if line.startswith("WRKJSON "):
                res = json.loads(line[len("WRKJSON "):])
            if "Non-2xx or 3xx responses:" in line:
                non2xx_text = int(line.split(":")[1])
    if res is None:
        sys.exit(f"no WRKJSON line in {a.file}")
    res["non2xx_wrk_text"] = non2xx_text
    print(json.dumps(res))


def parse_val(v):
    if v.startswith("@"):
        try:
            with open(v[1:]) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None
    try:
        return json.loads(v)
    except ValueError:
        return v


def cmd_record(a):
    rec = {}
    for kv in a.fields:
        k, _, v = kv.partition("=")
        rec[k] = parse_val(v)
    line = json.dumps(rec, sort_keys=False)
    for path in a.out:
        with open(path, "a") as f:
            f.write(line + "\n")


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def cmd_summary_line(a):
    with open(a.file) as f:
        m = json.load(f)
    w = m.get("wrk") or {}
    print(f"   {a.label}: {fmt(m.get('rps_2xx'))} req/s 2xx, p50 {fmt((w.get('p50_us') or 0) / 1000, 2)} ms, "
          f"p99 {fmt((w.get('p99_us') or 0) / 1000, 2)} ms, non-2xx {fmt(w.get('non2xx'))}, "
          f"CPU {fmt(m.get('cpu_us_per_req'), 2)} us/req, other work on the machine {fmt(m.get('other_cpu_s'), 2)} CPU-s, "
          f"load {m.get('loadavg_before')} -> {m.get('loadavg_after')}")


def cmd_table(a):
    rows = []
    with open(a.file) as f:
        recs = [json.loads(l) for l in f if l.strip()]
    for r in recs:
        ph = r.get("phase")
        load = r.get("load", "")
        if ph == "submit":
            w = r.get("wrk") or {}
            held = ", delivery held" if str(r.get("held")).lower() == "true" else ""
            rows.append((f"submit THREADS={r['threads']}{held} (wrk -t2 -c64 -d{r['duration']})",
                         f"{fmt(w.get('rps'))} req/s, p50 {fmt((w.get('p50_us') or 0) / 1000, 2)} ms, "
                         f"p99 {fmt((w.get('p99_us') or 0) / 1000, 2)} ms, non-2xx {fmt(w.get('non2xx'))}, "
                         f"sock err {sum(w.get(k, 0) for k in ('err_connect', 'err_read', 'err_write', 'err_timeout'))}",
                         r.get("target", ""), load))
            d = r.get("drain") or {}
            last = d.get("last") or {}
            rows.append((f"  after it (THREADS={r['threads']})",
                         f"backlog at wrk end {fmt((r.get('queue_end') or {}).get('queued'))}, "
                         f"all delivered: {d.get('done')} ({fmt(d.get('elapsed_s'), 1)} s after the check began), "
                         f"delivered {fmt(last.get('delivered_total'))}/{fmt(last.get('submitted_total'))}, "
                         f"failed {fmt(last.get('failed_total'))}, sink got {fmt(r.get('sink_msgs'))}, "
                         f"RSS {fmt((r.get('proc') or {}).get('VmHWM_MiB'))} MiB peak",
                         "", load))
        elif ph == "delivery_live":
            d = r.get("drain") or {}
            rows.append((f"delivery, live: submit {fmt(r['jobs'])} + deliver, THREADS=8",
                         f"{fmt(d.get('msg_per_s'))} msg/s (first submit -> all delivered {fmt(d.get('elapsed_s'), 2)} s; "
                         f"submit alone {fmt((r.get('submit') or {}).get('submit_rps'))} req/s); sink got {fmt(r.get('sink_msgs'))}",
                         r.get("target", ""), load))
        elif ph == "delivery_drain":
            d = r.get("drain") or {}
            rows.append((f"delivery, drain of a stored queue ({fmt(r.get('stored'))} jobs), THREADS=8",
                         f"{fmt(d.get('msg_per_s'))} msg/s ({fmt(d.get('elapsed_s'), 2)} s from restart, "
                         f"start-up {fmt(r.get('startup_s'), 3)} s); sink got {fmt(r.get('sink_msgs'))}",
                         r.get("target", ""), load))
        elif ph == "smtp_source":
            fl = r.get("flags") or ""
            how = "same connection, -d" if fl == "-d" else "new connection per message"
            rows.append((f"smtp-source -s 8 {fl + ' ' if fl else ''}-m {fmt(r['msgs'])} into smtp-sink ({how})",
                         f"{fmt(r.get('msg_per_s'))} msg/s ({fmt(r.get('elapsed_s'), 2)} s); sink got {fmt(r.get('sink_msgs'))}",
                         r.get("target", ""), load))
        elif ph == "ratio":
            x = r.get("ratios") or {}
            rows.append(("websmtpd delivery / smtp-source -s 8",
                         f"live {fmt(x.get('live_ratio'), 2)}x, drain {fmt(x.get('drain_ratio'), 2)}x",
                         r.get("target", ""), load))
            rows.append(("websmtpd delivery / smtp-source -s 8 -d (connection reuse, like ours)",
                         f"drain {fmt(x.get('drain_ratio_d'), 2)}x, live {fmt(x.get('live_ratio_d'), 2)}x",
                         ">= 1.0x (drain)", load))
        elif ph == "idle_latency":
            l = r.get("lat") or {}
            rows.append((f"idle submit->delivered, {fmt(l.get('jobs'))} sequential jobs, THREADS=4",
                         f"p50 {fmt(l.get('p50_ms'), 2)} ms, p90 {fmt(l.get('p90_ms'), 2)} ms, p99 {fmt(l.get('p99_ms'), 2)} ms, "
                         f"max {fmt(l.get('max_ms'), 2)} ms ({fmt(l.get('mean_polls'))} status GETs/job, errors {l.get('error_count')})",
                         r.get("target", ""), load))
        elif ph == "rss":
            p = r.get("proc") or {}
            q = r.get("queue") or {}
            s = r.get("submit") or {}
            rows.append((f"RSS with {fmt(q.get('queued'))} jobs queued (target {fmt(r['jobs'])})",
                         f"VmRSS {fmt(p.get('VmRSS_MiB'))} MiB, VmHWM {fmt(p.get('VmHWM_MiB'))} MiB; "
                         f"submitted {fmt(s.get('submitted_seen'))} in {fmt(s.get('submit_s'))} s = {fmt(s.get('submit_rps'))} req/s; "
                         f"store {fmt(r.get('db_mib'))} MiB on disk",
                         r.get("target", ""), load))
        elif ph == "compare":
            m = r.get("m") or {}
            w = m.get("wrk") or {}
            names = {"websmtpd": "websmtpd", "peer": "original", "floor": "empty Pistache handler"}
            mode = {"live": "delivery live", "held": "delivery held", "floor": "no delivery"}.get(r.get("mode"), r.get("mode"))
            died = "SERVER DIED during it (left out of the ratios); " if r.get("server_died") else ""
            rows.append((f"compare r{r['round']}: {names.get(r['server'], r['server'])}, {mode}",
                         f"{died}{fmt(m.get('rps_2xx'))} req/s (2xx), p50 {fmt((w.get('p50_us') or 0) / 1000, 2)} ms, "
                         f"p99 {fmt((w.get('p99_us') or 0) / 1000, 2)} ms, non-2xx {fmt(w.get('non2xx'))}, "
                         f"sock err {sum(w.get(k, 0) for k in ('err_connect', 'err_read', 'err_write', 'err_timeout'))}, "
                         f"CPU {fmt(m.get('cpu_us_per_req'), 2)} us/req ({fmt(m.get('server_cpu_pct'))}% of a CPU), "
                         f"other work on the machine {fmt(m.get('other_cpu_s'), 2)} CPU-s"
                         + (f", sink got {fmt(r.get('sink_at_wrk_end'))} by wrk's end" if r.get("sink_at_wrk_end") is not None else "")
                         + (f", submitted_total {fmt(r.get('submitted_total'))}" if r.get("submitted_total") is not None else "")
                         + f", peak RSS {fmt((r.get('proc') or {}).get('VmHWM_MiB'))} MiB",
                         "", load))
        elif ph == "compare_summary":
            x = r.get("summary") or {}
            def mr(k, nd=2):
                v = x.get(k) or {}
                if v.get("median") is None:
                    return "- (no round has both measurements)"
                return (f"{fmt(v.get('median'), nd)}x (range {fmt(v.get('min'), nd)}-{fmt(v.get('max'), nd)}, "
                        f"{len(v.get('per_round') or [])} rounds)")
            rows.append(("websmtpd / original, submit req/s, delivery held", mr("rps_held"), ">= 1.3x", load))
            rows.append(("websmtpd / original, submit req/s, delivery live", mr("rps_live"), ">= 1.2x", load))
            rows.append(("websmtpd / original, p99, delivery live", mr("p99_live"), "<= 0.25x", load))
            rows.append(("websmtpd / original, p99, delivery held", mr("p99_held"), "<= 0.25x", load))
            rows.append(("websmtpd / empty Pistache handler, CPU per 2xx request, delivery held",
                         mr("cpu_held_vs_floor"), "<= 1.3x", load))
            rows.append(("websmtpd / empty Pistache handler, CPU per 2xx request, delivery live",
                         mr("cpu_live_vs_floor"), "", load))
            rows.append(("original / empty Pistache handler, CPU per 2xx request, delivery held",
                         mr("peer_cpu_held_vs_floor"), "", load))
            ow = x.get("other_work_pct") or {}
            rows.append(("machine during the comparison",
                         f"{r.get('cpus')} CPUs; /proc/loadavg before: {r.get('loadavg_before')}; after: {r.get('loadavg_after')}; "
                         f"other work (not server, wrk, sink): median {fmt(ow.get('median'))}%, max {fmt(ow.get('max'))}% "
                         f"of the machine's CPU time during a measurement",
                         "", load))
        elif ph == "batch":
            m = r.get("m") or {}
            w = m.get("wrk") or {}
            if r.get("skipped"):
                rows.append(("/mail/batch, 100 jobs per request", f"skipped ({r.get('skipped')})", ">= 50,000 jobs/s", load))
            else:
                rows.append((f"/mail/batch, {r.get('per')} jobs per request, THREADS=4, delivery held (wrk -t2 -c16 -d{r.get('duration')})",
                             ("SERVER DIED during it; " if r.get("server_died") else "") +
                             f"{fmt(r.get('jobs_per_s'))} jobs/s accepted (2xx x {r.get('per')}); /admin/queue: "
                             f"{fmt(r.get('jobs_per_s_admin'))} jobs/s ({fmt(r.get('submitted_delta'))} submitted); "
                             f"{fmt(m.get('rps_2xx'))} req/s, p50 {fmt((w.get('p50_us') or 0) / 1000, 2)} ms, "
                             f"p99 {fmt((w.get('p99_us') or 0) / 1000, 2)} ms, non-2xx {fmt(w.get('non2xx'))}, "
                             f"CPU {fmt(m.get('cpu_us_per_req'), 1)} us/request",
                             ">= 50,000 jobs/s", load))
        elif ph == "run_info":
            rows.append(("run", f"websmtpd {r.get('websmtpd')}, tree at {r.get('commit')}; bench/ at {r.get('bench_commit')}; "
                                f"original: {r.get('peer') or 'not given (PEER_BIN)'}; "
                                f"phases: {r.get('phases')}; {r.get('cpus')} CPUs; /proc/loadavg at start: {r.get('loadavg')}", "", load))
        elif ph == "daemon_health":
            rows.append(("daemon log / exits",
                         f"{r.get('summary')}", "", load))
    w0 = max([len(x[0]) for x in rows] + [11])
    print()
    print(f"{'measurement':<{w0}} | result | target | load (1/5/15 min)")
    print("-" * (w0 + 40))
    for m, v, t, l in rows:
        print(f"{m:<{w0}} | {v} | {t} | {l}")
    print()


def main():
    p = argparse.ArgumentParser()
    sp = p.add_subparsers(dest="cmd", required=True)
    sp.add_parser("freeport").set_defaults(f=cmd_freeport)
    s = sp.add_parser("wait-port"); s.add_argument("port", type=int); s.add_argument("--pid", type=int, default=0)
    s.add_argument("--timeout", type=float, default=10); s.set_defaults(f=cmd_wait_port)
    s = sp.add_parser("wait-ready"); s.add_argument("file"); s.add_argument("pid", type=int)
    s.add_argument("--timeout", type=float, default=30); s.set_defaults(f=cmd_wait_ready)
    s = sp.add_parser("queue"); s.add_argument("admin", type=int); s.set_defaults(f=cmd_queue)
    s = sp.add_parser("proc"); s.add_argument("pid", type=int); s.set_defaults(f=cmd_proc)
    s = sp.add_parser("stop-wrk-at"); s.add_argument("--admin", type=int, required=True)
    s.add_argument("--target", type=int, required=True); s.add_argument("--wrk", type=int, required=True)
    s.add_argument("--t0", type=float, required=True); s.add_argument("--timeout", type=float, required=True)
    s.add_argument("--interval", type=float, default=0.05); s.set_defaults(f=cmd_stop_wrk_at)
    s = sp.add_parser("drain"); s.add_argument("--admin", type=int, required=True)
    s.add_argument("--target", type=int, required=True); s.add_argument("--t0", type=float, required=True)
    s.add_argument("--timeout", type=float, default=120); s.add_argument("--interval", type=float, default=0.1)
    s.add_argument("--min-submitted", type=int, default=0); s.set_defaults(f=cmd_drain)
    s = sp.add_parser("sample"); s.add_argument("--pid", type=int, required=True); s.add_argument("--admin", type=int, required=True)
    s.add_argument("--out", required=True); s.add_argument("--interval", type=float, default=5)
    s.add_argument("--max", type=float, default=900); s.set_defaults(f=cmd_sample)
    s = sp.add_parser("latency"); s.add_argument("--port", type=int, required=True); s.add_argument("--n", type=int, default=200)
    s.add_argument("--warmup", type=int, default=10); s.add_argument("--timeout", type=float, default=120)
    s.set_defaults(f=cmd_latency)
    s = sp.add_parser("wait-http"); s.add_argument("--port", type=int, required=True); s.add_argument("--path", default="/status")
    s.add_argument("--pid", type=int, default=0); s.add_argument("--timeout", type=float, default=30); s.set_defaults(f=cmd_wait_http)
    s = sp.add_parser("wait-portfile"); s.add_argument("file"); s.add_argument("pid", type=int)
    s.add_argument("--timeout", type=float, default=30); s.set_defaults(f=cmd_wait_portfile)
    s = sp.add_parser("measure"); s.add_argument("--pid", type=int, required=True); s.add_argument("--also", type=int, action="append")
    s.add_argument("--log", required=True); s.add_argument("--timeout", type=float, default=120)
    s.add_argument("wrk", nargs=argparse.REMAINDER); s.set_defaults(f=cmd_measure)
    s = sp.add_parser("probe"); s.add_argument("--port", type=int, required=True); s.add_argument("--path", required=True)
    s.add_argument("--body-file", required=True); s.set_defaults(f=cmd_probe)
    s = sp.add_parser("batch-body"); s.add_argument("--n", type=int, default=100); s.set_defaults(f=cmd_batch_body)
    s = sp.add_parser("compare-summary"); s.add_argument("file"); s.set_defaults(f=cmd_compare_summary)
    s = sp.add_parser("summary-line"); s.add_argument("file"); s.add_argument("label"); s.set_defaults(f=cmd_summary_line)
    s = sp.add_parser("wrkjson"); s.add_argument("file"); s.set_defaults(f=cmd_wrkjson)
    s = sp.add_parser("record"); s.add_argument("--out", action="append", required=True); s.add_argument("fields", nargs="*")
    s.set_defaults(f=cmd_record)
    s = sp.add_parser("table"); s.add_argument("file"); s.set_defaults(f=cmd_table)
    a = p.parse_args()
    a.f(a)


if __name__ == "__main__":
    main()
