"""A small authoritative DNS server over UDP for the direct-delivery tests.

It answers from a zone held in memory, so a test can say exactly what the resolver gets,
including what dnsmasq cannot express (a null MX, SERVFAIL for one name):

    zone = {
        "example.net": {"MX": [(10, "mx1.example.net"), (20, "mx2.example.net")]},
        "mx1.example.net": {"A": ["127.0.0.2"]},
        "nullmx.example": {"MX": [(0, "")]},           # RFC 7505 null MX
        "broken.example": {"SERVFAIL": True},
        "example.org": {"TXT": ["v=spf1 ip4:192.0.2.1 -all",          # one string
                                ["v=DKIM1; k=rsa; p=MIIB...", "..."]]},  # one record, several strings
    }

A TXT value given as one str longer than 255 bytes is cut into 255-byte strings, as a zone
file would have to write it; a list gives the strings exactly.

A name not in the zone is NXDOMAIN; a name without the asked type answers NOERROR with no
records (NODATA) and an SOA. Runs in a thread of the test process, bound to 127.0.0.1 on an
ephemeral port (or ::1 with host="::1"); `queries` lists (name, type) in arrival order.
Standard library only.
"""

import socket
import struct
import threading

TYPES = {1: "A", 15: "MX", 16: "TXT", 28: "AAAA", 6: "SOA"}


def encode_name(name):
    out = b""
    for label in name.strip(".").split("."):
        if label:
            raw = label.encode("ascii")
            out += bytes([len(raw)]) + raw
    return out + b"\x00"


def decode_name(msg, offset):
    labels = []
    while True:
        n = msg[offset]
        offset += 1
        if n == 0:
            return ".".join(labels), offset
        labels.append(msg[offset:offset + n].decode("ascii", "replace"))
        offset += n


def txt_rdata(value):
    if isinstance(value, str):
        raw = value.encode("utf-8")
        strings = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    else:
        strings = [v.encode("utf-8") for v in value]
    out = b""
    for chunk in strings:
        if len(chunk) > 255:
            raise ValueError("a TXT string holds at most 255 bytes")
        out += bytes([len(chunk)]) + chunk
    return out


class DnsServer:
    def __init__(self, zone=None, ttl=300, host="127.0.0.1"):
        self.zone = {k.lower(): v for k, v in (zone or {}).items()}
        self.ttl = ttl
        self.queries = []
        self.lock = threading.Lock()
        self.host = host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.address = ("[%s]:%d" if family == socket.AF_INET6 else "%s:%d") % (host, self.port)
        self._stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def stop(self):
        self._stop = True
        try:
            with socket.socket(self.sock.family, socket.SOCK_DGRAM) as s:
                s.sendto(b"", (self.host, self.port))  # wakes the thread up
        except OSError:
            pass
        self.thread.join(5)
        self.sock.close()

    def count(self, name, qtype):
        with self.lock:
            return sum(1 for q in self.queries if q == (name.lower(), qtype))

    def _serve(self):
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(4096)
            except OSError:
                return
            if self._stop:
                return
            try:
                reply = self.answer(data)
            except Exception:  # a malformed query gets no answer
                continue
            self.sock.sendto(reply, addr)

    def answer(self, query):
        qid, flags = struct.unpack("!HH", query[:4])
        name, end = decode_name(query, 12)
        qtype, _qclass = struct.unpack("!HH", query[end:end + 4])
        question = query[12:end + 4]
        name = name.lower()
        with self.lock:
            self.queries.append((name, TYPES.get(qtype, str(qtype))))
        node = self.zone.get(name)
        rd = flags & 0x0100
        answers, authority, rcode = [], [], 0
        if node is None:
            rcode = 3
        elif node.get("SERVFAIL"):
            rcode = 2
        else:
            kind = TYPES.get(qtype)
            for value in node.get(kind, []) if kind else []:
                if kind == "A":
                    rdata = socket.inet_pton(socket.AF_INET, value)
                elif kind == "AAAA":
                    rdata = socket.inet_pton(socket.AF_INET6, value)
                elif kind == "TXT":
                    rdata = txt_rdata(value)
                else:
                    pref, exchange = value
                    rdata = struct.pack("!H", pref) + encode_name(exchange)
                answers.append(b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, self.ttl, len(rdata)) + rdata)
        if rcode == 3 or (rcode == 0 and not answers):
            soa = encode_name("ns.test") + encode_name("hostmaster.test") + struct.pack("!IIIII", 1, 60, 60, 60, 60)
            authority.append(encode_name(name) + struct.pack("!HHIH", 6, 1, 60, len(soa)) + soa)
        header = struct.pack("!HHHHHH", qid, 0x8400 | 0x0080 | rd | rcode, 1, len(answers), len(authority), 0)
        return header + question + b"".join(answers) + b"".join(authority)
