#!/usr/bin/python3
"""Scriptable SMTP test peer for websmtp integration tests.

Run it with Debian's interpreter, which ships python3-aiosmtpd::

    /usr/bin/python3 tests/support/smtp_peer.py --log FILE \
        [--host 127.0.0.1] [--port 0] [--fault MODE] [--exit-on-stdin-eof]

Once the listening socket accepts connections the program prints exactly one
line ``READY <port>`` on stdout (flushed) and serves until SIGTERM/SIGINT (or
until stdin reaches EOF with ``--exit-on-stdin-eof``), then exits 0.

Recipient behaviour, from the local part of RCPT TO (case-insensitive):

    deferonce*  451 the first time this exact address is seen, 250 afterwards
    defer*      451 4.3.0 <addr>: try again later
    reject*     550 5.1.1 <addr>: user unknown
    hangdata*   250, but the first transaction that carries this exact address
                is logged as an accepted message (with "reply": "none") after
                its final "." and then never answered: the reply to DATA is
                lost although the peer has the message (a real duplicate
                when the client sends it again)
    dropdata*   250, but the first transaction that carries this exact address
                has its connection aborted as soon as DATA bytes arrive
    closeonce*  the first time this exact address is seen: "421 4.3.2 Service
                shutting down" and the connection is closed; 250 afterwards
    hang*       (other than hangdata*) never answered: the RCPT stalls until
                the client goes away (a fault event with stage "rcpt" is
                logged first)
    datareject* 250 to RCPT, then the message is refused at the end of DATA with
                "550 5.1.1 message refused" (a 5.1.x that is about the message)
    otherwise   250 2.1.5 Ok

An accepted DATA is answered ``250 2.0.0 Ok: queued as <N>``.

With ``--pipelining`` (``PeerProcess(pipelining=True)``) the EHLO reply also
offers PIPELINING (RFC 2920); commands are answered in order either way.
SMTPUTF8 (RFC 6531) is offered unless ``--no-smtputf8``
(``PeerProcess(smtputf8=False)``): then a UTF-8 address in MAIL or RCPT is
refused by aiosmtpd ("strict ASCII mode").

Log file (JSON lines, append mode, flushed and fsync'd per line, written
before the SMTP reply is sent):

    {"event": "rcpt", "address": ..., "code": 250|451|550}
    {"seq": N, "mail_from": ..., "rcpt_tos": [accepted only],
     "mail_options": [MAIL FROM parameters, e.g. "SMTPUTF8"],
     "data": <message, utf-8 decoded with surrogateescape>, "time": float}
    {"event": "fault", "mode": ..., "stage": ...}   (fault modes and rules)
    {"event": "mode", "mode": ..., "count": N}       (after set_fault())
    {"event": "quit"}                                (the client said QUIT)

A message record with "reply": "none" was taken in but never answered
(hangdata*, close-after-data).

``data`` holds the message exactly as received after dot-unstuffing (CRLF line
endings, without the terminating ``.``); ``data.encode("utf-8",
"surrogateescape")`` gives back the original bytes.

Fault modes (--fault):

    none           normal behaviour (default)
    hang-greeting  accept TCP connections, never send anything
    hang-data      normal until the final "." of DATA, then never answer
    drop-data      abort the connection as soon as DATA bytes arrive
    garbage        greet with "HTTP/1.1 400 Bad Request" and close
    421            greet with "421 4.3.2 Service shutting down" and close
    tempfail-all   every RCPT gets 451
    hold-data      normal until the final "." of DATA, then logs a fault event
                   (stage "data-end") and holds the reply: each byte written to
                   the peer's stdin (PeerProcess.release()) lets the oldest held
                   DATA go on (logged and answered 250 as usual)
    ehlo-stall     greet normally, answer EHLO with the first line of a
                   multi-line reply ("250-peer.test") and stall forever
    ehlo-close     same first line, then close the connection
    trickle        greet with "220 " and then one byte every 0.2 s, never
                   ending the line (a reply that never completes, although
                   bytes keep arriving)
    close-after-data  normal until the final "." of DATA; the message is
                   logged as accepted (with "reply": "none") and the
                   connection is closed without a reply (the reply is lost,
                   the peer has the message)
    starttls-454   offer STARTTLS in EHLO and answer it "454 4.7.0 TLS not
                   available" (fault event, stage "starttls")
    starttls-broken  offer STARTTLS, answer it "220" and then send bytes
                   that are no TLS handshake and close: the handshake fails
    tempfail-data  answer the final "." with "451 4.3.0 try again later"
                   (fault event, stage "data-end"; the message is not kept)
    rcpt-limit-2   a transaction takes at most 2 recipients: a third RCPT gets
                   "452 4.5.3 Too many recipients" (RFC 5321 4.5.3.1.10)

Runtime switch: with ``--control FILE``, SIGUSR1 makes the peer read FILE
(one fault mode name) and use that mode for new connections and commands;
it logs {"event": "mode", ...} once switched. ``PeerProcess.set_fault(mode)``
does all of this and waits for the log line. Connections already stalled
stay stalled.

The module part (``PeerProcess``) only needs the standard library, so it can be
imported from any Python 3 interpreter; only the server needs aiosmtpd.
"""

import argparse
import asyncio
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

DEBIAN_PYTHON = "/usr/bin/python3"
PEER_HOSTNAME = "peer.test"
DATA_SIZE_LIMIT = 64 * 1024 * 1024
FAULT_MODES = ("none", "hang-greeting", "hang-data", "drop-data", "garbage",
               "421", "tempfail-all", "hold-data", "ehlo-stall", "ehlo-close",
               "trickle", "close-after-data", "starttls-454", "starttls-broken",
               "tempfail-data", "rcpt-limit-2")
STARTTLS_FAULTS = ("starttls-454", "starttls-broken")
TRICKLE_INTERVAL = 0.2

GARBAGE_REPLY = (b"HTTP/1.1 400 Bad Request\r\n"
                 b"Content-Length: 0\r\n"
                 b"Connection: close\r\n\r\n")
SHUTDOWN_GREETING = b"421 4.3.2 Service shutting down\r\n"


# --------------------------------------------------------------------------
# Server side
# --------------------------------------------------------------------------

class JsonLog:
    """Append-only JSON-lines log, durable per line."""

    def __init__(self, path):
        self._file = open(path, "a", encoding="ascii")

    def write(self, record):
        # ensure_ascii keeps every line plain ASCII, lone surrogates included.
        self._file.write(json.dumps(record, ensure_ascii=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self):
        self._file.close()


def _local_part(address):
    local = address.rsplit("@", 1)[0] if "@" in address else address
    return local.strip('"').lower()


class PeerHandler:
    """aiosmtpd handler implementing the recipient rules and message log."""

    def __init__(self, log, fault="none", pipelining=False):
        self.log = log
        self.fault = fault
        self.pipelining = pipelining
        self.seq = 0
        self.seen_deferonce = set()
        self.seen_hangdata = set()
        self.seen_dropdata = set()
        self.seen_closeonce = set()
        self.releases = None  # hold-data: asyncio.Semaphore, created in the loop

    def take_first(self, addresses, prefix, seen):
        """The addresses with local part `prefix`* not seen before (now seen)."""
        fresh = [a for a in addresses if _local_part(a).startswith(prefix)
                 and a not in seen]
        seen.update(fresh)
        return fresh

    def _message_record(self, envelope, **extra):
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content or b""
        if isinstance(raw, str):
            text = raw
        else:
            text = bytes(raw).decode("utf-8", "surrogateescape")
        self.seq += 1
        record = {
            "seq": self.seq,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "mail_options": list(envelope.mail_options or []),
            "data": text,
            "time": time.time(),
        }
        record.update(extra)
        return record

    def decide(self, address):
        if self.fault == "tempfail-all":
            return 451, "451 4.3.0 <%s>: try again later" % address
        local = _local_part(address)
        if local.startswith("deferonce"):
            if address not in self.seen_deferonce:
                self.seen_deferonce.add(address)
                return 451, "451 4.3.0 <%s>: try again later" % address
            return 250, "250 2.1.5 Ok"
        if local.startswith("defer"):
            return 451, "451 4.3.0 <%s>: try again later" % address
        if local.startswith("reject"):
            return 550, "550 5.1.1 <%s>: user unknown" % address
        return 250, "250 2.1.5 Ok"

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        session.host_name = hostname  # this hook's duty in aiosmtpd 1.4
        if self.pipelining:
            responses.insert(len(responses) - 1, "250-PIPELINING")
        if self.fault in STARTTLS_FAULTS:
            responses.insert(len(responses) - 1, "250-STARTTLS")
        return responses

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        local = _local_part(address)
        if local.startswith("hang") and not local.startswith("hangdata") \
                and self.fault != "tempfail-all":
            self.log.write({"event": "fault", "mode": "hang-rcpt",
                            "stage": "rcpt", "address": address})
            # Never answer; cancelled when the client goes away or at exit.
            await asyncio.get_running_loop().create_future()
        if local.startswith("closeonce") and address not in self.seen_closeonce \
                and self.fault != "tempfail-all":
            self.seen_closeonce.add(address)
            self.log.write({"event": "rcpt", "address": address, "code": 421})
            await server.push("421 4.3.2 Service shutting down")
            if server.transport is not None:
                server.transport.close()
            await asyncio.get_running_loop().create_future()
        code, reply = self.decide(address)
        if code == 250 and self.fault == "rcpt-limit-2" and len(envelope.rcpt_tos) >= 2:
            code, reply = 452, "452 4.5.3 Too many recipients"
        if code == 250:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        self.log.write({"event": "rcpt", "address": address, "code": code})
        return reply

    async def handle_QUIT(self, server, session, envelope):
        self.log.write({"event": "quit"})
        return "221 Bye"

    async def handle_DATA(self, server, session, envelope):
        fault = self.fault
        if fault == "hang-data":
            self.log.write({"event": "fault", "mode": fault,
                            "stage": "data-end"})
            # Never answer; cancelled when the client goes away or at exit.
            await asyncio.get_running_loop().create_future()
        if fault == "hold-data":
            self.log.write({"event": "fault", "mode": fault,
                            "stage": "data-end"})
            await self.releases.acquire()
        if fault == "close-after-data":
            self.log.write(self._message_record(envelope, reply="none"))
            self.log.write({"event": "fault", "mode": fault,
                            "stage": "data-end"})
            if server.transport is not None:
                server.transport.close()  # FIN, no reply
            await asyncio.get_running_loop().create_future()
        if fault == "tempfail-data":
            self.log.write({"event": "fault", "mode": fault,
                            "stage": "data-end"})
            return "451 4.3.0 try again later"
        hung = self.take_first(envelope.rcpt_tos, "hangdata",
                               self.seen_hangdata)
        if hung:
            self.log.write(self._message_record(envelope, reply="none"))
            self.log.write({"event": "fault", "mode": "hangdata-rcpt",
                            "stage": "data-end", "addresses": hung})
            await asyncio.get_running_loop().create_future()
        if any(_local_part(a).startswith("datareject") for a in envelope.rcpt_tos):
            self.log.write({"event": "fault", "mode": "datareject-rcpt", "stage": "data-end"})
            return "550 5.1.1 message refused"
        record = self._message_record(envelope)
        self.log.write(record)
        return "250 2.0.0 Ok: queued as %d" % record["seq"]


class _SilentProtocol(asyncio.Protocol):
    """hang-greeting: accept and keep the connection, never send a byte."""

    def __init__(self, peer):
        self.peer = peer
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.peer.transports.add(transport)
        self.peer.log.write({"event": "fault", "mode": self.peer.fault,
                             "stage": "connect"})

    def data_received(self, data):
        pass  # swallow whatever the client sends

    def connection_lost(self, exc):
        self.peer.transports.discard(self.transport)


class _GreetAndCloseProtocol(asyncio.Protocol):
    """garbage / 421: write a fixed greeting, then close."""

    def __init__(self, peer, payload):
        self.peer = peer
        self.payload = payload

    def connection_made(self, transport):
        self.peer.log.write({"event": "fault", "mode": self.peer.fault,
                             "stage": "connect"})
        transport.write(self.payload)
        transport.close()  # flushes the buffered greeting first


class _TrickleProtocol(asyncio.Protocol):
    """trickle: "220 " and then one byte every TRICKLE_INTERVAL, no line end."""

    def __init__(self, peer):
        self.peer = peer
        self.transport = None
        self.timer = None

    def connection_made(self, transport):
        self.transport = transport
        self.peer.transports.add(transport)
        self.peer.log.write({"event": "fault", "mode": "trickle",
                             "stage": "connect"})
        transport.write(b"220 ")
        self._schedule()

    def _schedule(self):
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(TRICKLE_INTERVAL, self._tick)

    def _tick(self):
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(b"x")
        self._schedule()

    def data_received(self, data):
        pass

    def connection_lost(self, exc):
        if self.timer is not None:
            self.timer.cancel()
        self.peer.transports.discard(self.transport)
        self.transport = None


def _make_smtp_class():
    from aiosmtpd.smtp import SMTP, syntax

    class PeerSMTP(SMTP):
        """SMTP protocol that also tracks its transport for shutdown."""

        peer = None

        def connection_made(self, transport):
            if self.peer is not None:
                self.peer.transports.add(transport)
            super().connection_made(transport)

        def connection_lost(self, error):
            if self.peer is not None and self.transport is not None:
                self.peer.transports.discard(self.transport)
            super().connection_lost(error)

        @syntax('EHLO hostname')
        async def smtp_EHLO(self, hostname):
            fault = self.peer.fault if self.peer is not None else "none"
            if hostname and fault in ("ehlo-stall", "ehlo-close"):
                self.peer.log.write({"event": "fault", "mode": fault,
                                     "stage": "ehlo"})
                await self.push("250-" + self.hostname)
                if fault == "ehlo-close":
                    self.transport.close()
                # Never finish the reply; cancelled when the client goes away.
                await asyncio.get_running_loop().create_future()
            await super().smtp_EHLO(hostname)

        @syntax('STARTTLS')
        async def smtp_STARTTLS(self, arg):
            fault = self.peer.fault if self.peer is not None else "none"
            if fault not in STARTTLS_FAULTS:
                await self.push("500 Error: command \"STARTTLS\" not recognized")
                return
            self.peer.log.write({"event": "fault", "mode": fault,
                                 "stage": "starttls"})
            if fault == "starttls-454":
                await self.push("454 4.7.0 TLS not available")
                return
            await self.push("220 2.0.0 Ready to start TLS")
            self.transport.write(b"this is no TLS handshake\r\n")
            self.transport.close()

        # drop-data (the mode, or a fresh dropdata* recipient): abort the
        # connection once DATA bytes arrive.
        _drop_armed = None

        async def push(self, status):
            head = status[:3]
            if head in ("354", b"354") and self.peer is not None:
                if self.peer.fault == "drop-data":
                    self._drop_armed = "drop-data"
                elif self.envelope is not None and self.peer.handler.take_first(
                        self.envelope.rcpt_tos, "dropdata",
                        self.peer.handler.seen_dropdata):
                    self._drop_armed = "dropdata-rcpt"
            await super().push(status)

        def data_received(self, data):
            if self._drop_armed and data and self.transport is not None:
                mode, self._drop_armed = self._drop_armed, None
                self.peer.log.write({"event": "fault", "mode": mode,
                                     "stage": "data", "bytes": len(data)})
                self.transport.abort()
                return
            super().data_received(data)

    return PeerSMTP


class Peer:
    def __init__(self, log, fault, pipelining=False, smtputf8=True):
        self.log = log
        self.smtputf8 = smtputf8
        self.fault = fault
        self.transports = set()
        self.handler = PeerHandler(log, fault, pipelining)

    def set_fault(self, fault):
        self.fault = fault
        self.handler.fault = fault

    def protocol_factory(self, loop):
        """Picks the protocol per connection from the current fault mode."""
        cls = _make_smtp_class()

        def factory():
            fault = self.fault
            if fault == "hang-greeting":
                return _SilentProtocol(self)
            if fault == "garbage":
                return _GreetAndCloseProtocol(self, GARBAGE_REPLY)
            if fault == "421":
                return _GreetAndCloseProtocol(self, SHUTDOWN_GREETING)
            if fault == "trickle":
                return _TrickleProtocol(self)
            proto = cls(self.handler,
                        hostname=PEER_HOSTNAME,
                        enable_SMTPUTF8=self.smtputf8,
                        decode_data=False,  # also advertises 8BITMIME
                        data_size_limit=DATA_SIZE_LIMIT,
                        loop=loop)
            proto.peer = self
            return proto
        return factory


def _listening_socket(host, port):
    # Bind exactly one socket, so "port 0" yields exactly one real port even
    # when the host name resolves to several addresses.
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, socktype, proto, _, addr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve(args):
    loop = asyncio.get_running_loop()
    log = JsonLog(args.log)
    peer = Peer(log, args.fault, args.pipelining, not args.no_smtputf8)
    peer.handler.releases = asyncio.Semaphore(0)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    switches = [0]

    def on_usr1():
        # Runtime switch: the control file names the new fault mode.
        try:
            with open(args.control) as f:
                mode = f.read().strip()
        except (OSError, TypeError) as e:
            sys.stderr.write("smtp_peer: cannot read control file: %s\n" % e)
            return
        if mode not in FAULT_MODES:
            sys.stderr.write("smtp_peer: unknown fault mode %r\n" % mode)
            return
        peer.set_fault(mode)
        switches[0] += 1
        log.write({"event": "mode", "mode": mode, "count": switches[0]})
    if args.control:
        loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    if args.exit_on_stdin_eof:
        fd = sys.stdin.fileno()

        def on_stdin():
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                chunk = b""
            if not chunk:
                loop.remove_reader(fd)
                stop.set()
            elif peer.fault == "hold-data" or args.fault == "hold-data":
                for _ in range(len(chunk)):
                    peer.handler.releases.release()
        loop.add_reader(fd, on_stdin)

    sock = _listening_socket(args.host, args.port)
    server = await loop.create_server(peer.protocol_factory(loop), sock=sock)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write("READY %d\n" % port)
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        server.close()
        for transport in list(peer.transports):
            transport.abort()
        try:
            await asyncio.wait_for(server.wait_closed(), timeout=2)
        except (asyncio.TimeoutError, Exception):
            pass
        log.close()
    return 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Scriptable SMTP test peer")
    parser.add_argument("--log", required=True,
                        help="JSON-lines log file (appended)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0,
                        help="0 = ephemeral port (default)")
    parser.add_argument("--fault", default="none", choices=FAULT_MODES)
    parser.add_argument("--pipelining", action="store_true",
                        help="offer PIPELINING in the EHLO reply")
    parser.add_argument("--no-smtputf8", action="store_true",
                        help="do not offer SMTPUTF8 in the EHLO reply")
    parser.add_argument("--control", default=None,
                        help="file naming a fault mode, read on SIGUSR1")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="also exit when stdin reaches EOF "
                             "(parent went away)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 0


# --------------------------------------------------------------------------
# Client side: run the peer as a subprocess
# --------------------------------------------------------------------------

class PeerProcess:
    """Start smtp_peer.py as a subprocess and talk to its log.

    with PeerProcess(fault="none") as peer:
        smtplib.SMTP(peer.host, peer.port) ...
        peer.messages()
    """

    SCRIPT = os.path.abspath(__file__)

    def __init__(self, log_path=None, fault=None, host="127.0.0.1", port=0,
                 startup_timeout=10.0, stop_timeout=5.0,
                 python=DEBIAN_PYTHON, start=True, pipelining=False,
                 smtputf8=True):
        self.host = host
        self.smtputf8 = smtputf8
        self.fault = fault or "none"
        self.pipelining = pipelining
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.python = python
        self._requested_port = port
        self._own_dir = None
        if log_path is None:
            self._own_dir = tempfile.mkdtemp(prefix="smtp_peer.")
            log_path = os.path.join(self._own_dir, "peer.jsonl")
        self.log_path = os.path.abspath(log_path)
        self.control_path = self.log_path + ".control"
        self.proc = None
        self.port = None
        self.returncode = None
        self.stdout_tail = b""  # anything printed after READY (should be b"")
        self._stderr = None
        self._stderr_text_final = ""
        self._cached_records = None
        if start:
            self.start()

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        if self.proc is not None:
            raise RuntimeError("peer already started")
        self._stderr = tempfile.TemporaryFile()
        cmd = [self.python, self.SCRIPT, "--log", self.log_path,
               "--host", self.host, "--port", str(self._requested_port),
               "--fault", self.fault, "--control", self.control_path,
               "--exit-on-stdin-eof"] + (["--pipelining"] if self.pipelining else []) \
            + ([] if self.smtputf8 else ["--no-smtputf8"])
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE,
                                     stderr=self._stderr, close_fds=True)
        try:
            self.port = self._read_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _read_ready(self):
        deadline = time.monotonic() + self.startup_timeout
        fd = self.proc.stdout.fileno()
        buf = b""
        while b"\n" not in buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    "smtp peer not READY within %.1fs; stderr:\n%s"
                    % (self.startup_timeout, self.stderr_text()))
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                self.proc.wait(timeout=self.stop_timeout)
                raise RuntimeError(
                    "smtp peer exited (rc=%s) before READY; stderr:\n%s"
                    % (self.proc.returncode, self.stderr_text()))
            buf += chunk
        line, _, rest = buf.partition(b"\n")
        self.stdout_tail += rest
        parts = line.decode("ascii", "replace").split()
        if len(parts) != 2 or parts[0] != "READY" or not parts[1].isdigit():
            raise RuntimeError("unexpected smtp peer output: %r" % line)
        return int(parts[1])

    def stderr_text(self):
        if self._stderr is None or self._stderr.closed:
            return self._stderr_text_final
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def release(self, count=1):
        """hold-data: let `count` held DATA transactions be answered."""
        self.proc.stdin.write(b"+" * count)
        self.proc.stdin.flush()

    def set_fault(self, fault, timeout=5.0):
        """Switch the running peer to another fault mode ("none": healthy).

        Writes the control file, signals the peer (SIGUSR1, by PID) and waits
        (bounded) until the peer logs the switch. New connections and
        commands follow the new mode; stalled connections stay stalled.
        """
        if fault not in FAULT_MODES:
            raise ValueError("unknown fault mode %r" % fault)
        before = len([r for r in self.records() if r.get("event") == "mode"])
        tmp = self.control_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(fault + "\n")
        os.replace(tmp, self.control_path)
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while True:
            modes = [r for r in self.records() if r.get("event") == "mode"]
            if len(modes) > before and modes[-1]["mode"] == fault:
                self.fault = fault
                return
            if time.monotonic() >= deadline:
                raise TimeoutError("smtp peer did not switch to %r within "
                                   "%.1fs; stderr:\n%s"
                                   % (fault, timeout, self.stderr_text()))
            time.sleep(0.01)

    def stop(self, signum=signal.SIGTERM):
        """Signal the peer by PID, wait, kill after stop_timeout.

        Returns the exit status (0 for a clean shutdown). Idempotent.
        """
        proc = self.proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            try:
                proc.send_signal(signum)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=self.stop_timeout)
        self.returncode = proc.returncode
        if proc.stdout is not None:
            try:
                self.stdout_tail += proc.stdout.read()
            except (OSError, ValueError):
                pass
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        try:
            os.unlink(self.control_path)
        except OSError:
            pass
        if self._own_dir is not None:
            self._cached_records = self._read_records()
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None
        if self._stderr is not None:
            self._stderr_text_final = self.stderr_text()
            self._stderr.close()
        self.proc = None
        return self.returncode

    def __enter__(self):
        if self.proc is None and self.returncode is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- log access --------------------------------------------------------

    def _read_records(self):
        try:
            with open(self.log_path, "r", encoding="ascii") as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            return []
        records = []
        # The last element is "" or a partially written line: skip it.
        for line in lines[:-1]:
            if line.strip():
                records.append(json.loads(line))
        return records

    def records(self):
        """Every log line (messages, rcpt events, fault events)."""
        if self._cached_records is not None:
            return list(self._cached_records)
        return self._read_records()

    def messages(self):
        """Accepted messages: dicts with seq, mail_from, rcpt_tos, data, time."""
        return [r for r in self.records() if "event" not in r and "seq" in r]

    def rcpt_events(self):
        """RCPT decisions: dicts with event="rcpt", address, code."""
        return [r for r in self.records() if r.get("event") == "rcpt"]

    def fault_events(self):
        return [r for r in self.records() if r.get("event") == "fault"]

    def quit_events(self):
        return [r for r in self.records() if r.get("event") == "quit"]

    def wait_for_fault_event(self, count=1, timeout=10.0, interval=0.02,
                             **match):
        """Poll the log until `count` fault events match `match` (key=value,
        e.g. stage="rcpt"); bounded by `timeout`. Returns the events."""
        deadline = time.monotonic() + timeout
        while True:
            events = [e for e in self.fault_events()
                      if all(e.get(k) == v for k, v in match.items())]
            if len(events) >= count:
                return events
            if time.monotonic() >= deadline:
                raise TimeoutError("expected %d fault events %r, have %d"
                                   % (count, match, len(events)))
            time.sleep(interval)

    def wait_for_messages(self, count, timeout=10.0, interval=0.02):
        """Poll the log until at least `count` messages are there.

        Bounded by `timeout`; returns the messages or raises TimeoutError.
        """
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.messages()
            if len(msgs) >= count:
                return msgs
            if time.monotonic() >= deadline:
                raise TimeoutError("expected %d messages, have %d"
                                   % (count, len(msgs)))
            time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
