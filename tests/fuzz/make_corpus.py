#!/usr/bin/python3
"""Writes the seed corpus of each fuzz target into corpus/<target>/seed-*.

Seeds are starting points for the fuzzer and, replayed by ctest (fuzz-replay), regression
inputs in their own right. Inputs the fuzzer found crashing are kept next to them as
corpus/<target>/crash-* and are never rewritten by this script. Run from anywhere:
    /usr/bin/python3 tests/fuzz/make_corpus.py
"""
import json
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent


def write(target, seeds):
    d = HERE / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    for old in d.glob("seed-*"):
        old.unlink()
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        (d / f"seed-{name}").write_bytes(data)


def j(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


SEED_JOB = {"from": "Alice <alice@example.org>", "to": ["bob@example.net", "Carol <carol@example.com>"],
            "subject": "Hello World", "body": "hello, how are you sir?"}
FULL_JOB = {"from": "a@b.cc", "to": ["x@y.zz"], "cc": ["c@y.zz"], "bcc": ["d@y.zz"], "reply_to": "help@b.cc",
            "subject": "", "html": "<p>hi</p>", "headers": {"X-Campaign": "welcome"},
            "attachments": [{"filename": "a.txt", "content_type": "text/plain", "content": "aGVsbG8="}]}


def job_seeds():
    s = {}
    s["request"] = j(SEED_JOB)
    s["extensions"] = j(FULL_JOB)
    s["batch"] = j({"jobs": [SEED_JOB, FULL_JOB, dict(SEED_JOB, to="z@q.rs")]})
    s["batch-bad-job"] = j({"jobs": [SEED_JOB, dict(SEED_JOB, to=[5])]})
    s["batch-extra-key"] = j({"jobs": [SEED_JOB], "x": 1})
    s["batch-dup-key-in-job"] = '{"jobs":[%s,{"from":"a@b.cc","from":"c@d.ee","to":["x@y.zz"],"subject":"","body":""}]}' % j(SEED_JOB)
    s["dup-key-root"] = '{"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b","to":["evil@y.zz"]}'
    s["dup-key-headers"] = '{"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b","headers":{"X-A":"1","X-A":"2"}}'
    s["dup-key-escaped"] = '{"to":1,"t\\u006f":2}'
    s["depth-32"] = "[" * 32 + "]" * 32
    s["depth-33"] = '{"a":' * 33 + "1" + "}" * 33
    s["depth-4000"] = "[" * 4000
    s["empty"] = ""
    s["truncated"] = '{"from":"a@b.cc","to":["x@y'
    s["array-root"] = "[1,2]"
    s["trailing-bytes"] = j(SEED_JOB) + " {}"
    s["invalid-utf8"] = b'{"from":"a@b.cc","to":["\xff@y.zz"],"subject":"s","body":"b"}'
    s["overlong-utf8"] = b'{"from":"a@b.cc","to":["x@y.zz"],"subject":"\xc0\xaf","body":"b"}'
    s["surrogates"] = '{"from":"a@b.cc","to":["x@y.zz"],"subject":"\\ud83d\\ude00 \\ud800","body":"b"}'
    s["crlf-subject"] = j(dict(SEED_JOB, subject="hi\r\nBcc: evil@x.yz"))
    s["crlf-header"] = j(dict(SEED_JOB, headers={"X-A": "v\r\nBcc: evil@x.yz"}))
    s["crlf-address"] = j(dict(SEED_JOB, to=["bob@example.net\r\nRCPT TO:<evil@x.yz>"]))
    s["nul-body"] = '{"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"a\\u0000b"}'
    s["non-ascii"] = j(dict(SEED_JOB, **{"from": "Jöhn Dœ <john@example.org>", "subject": "Grüße ✉ 日本語",
                                         "body": "ça va?", "to": ["jö@example.org", "x@bücher.de"]}))
    s["recipients-200"] = j(dict(SEED_JOB, to=[f"u{i}@example.net" for i in range(200)]))
    s["recipients-dups"] = j(dict(SEED_JOB, to=["bob@example.net"] * 10, cc=["BOB@Example.NET", "bob@EXAMPLE.net"],
                                  bcc=["carol@example.com", "bob@example.net"]))
    s["addresses-odd"] = j(dict(SEED_JOB, to=['"a b"@x.yz', "x@[192.0.2.1]", "x@[IPv6:2001:db8::1]", '"A, B" <a@b.cc>',
                                              '"q\\"uote" <q@b.cc>', "<bare@b.cc>"]))
    s["types"] = '{"from":["a@b.cc"],"to":"x@y.zz","cc":null,"subject":1,"body":true,"headers":[]}'
    s["attachments-bad"] = j(dict(SEED_JOB, attachments=[{"filename": "../a", "content": "!!"},
                                                         {"filename": "b", "content_type": "x", "content": "AA=="}]))
    s["headers-reserved"] = j(dict(SEED_JOB, headers={"Bcc": "x@y.zz", "Content-Type": "text/html", "X:Y": "1"}))
    s["numbers-comments"] = '{"a":1e999,"b":-0,"c":18446744073709551616} /*c*/'
    s["long-subject"] = j(dict(SEED_JOB, subject="s" * 2001))
    return s


def mime_input(fields, attachments=()):
    parts = []
    for f in fields:
        if isinstance(f, (list, tuple)):
            f = b"\xfe".join(x.encode() if isinstance(x, str) else x for x in f)
        elif isinstance(f, str):
            f = f.encode()
        parts.append(f)
    for a in attachments:
        parts.append(b"\xfe".join(x.encode() if isinstance(x, str) else x for x in a))
    return b"\xff".join(parts)


def mime_seeds():
    base = ["Alice <alice@example.org>", ["bob@example.net"], "", "", "Hello", "hello, how are you sir?"]
    s = {}
    s["text"] = mime_input(base)
    s["text-html"] = mime_input(base + ["<p>hi</p>"])
    s["html-only"] = mime_input(base[:5] + ["", "<p>hi</p>"])
    s["no-body"] = mime_input(["a@b.cc", ["x@y.zz"], "", "", "s"])  # refused: no body nor html
    s["attachment"] = mime_input(base + ["", "", ""], [("a.pdf", "application/pdf", b"%PDF-1.4\x00\xff")])
    s["attachments-utf8"] = mime_input(base + ["<b>x</b>", "help@example.org", ["X-Campaign", "welcome"]],
                                       [("résumé très long nom de fichier " * 3 + ".txt", "", "x"),
                                        ("empty", "text/plain", b"")])
    s["long-lines"] = mime_input(base[:5] + ["x" * 2000 + "\n" + "y " * 600])
    s["bare-cr-lf"] = mime_input(base[:5] + ["a\rb\nc\r\n\r\rd \n\t\n"])
    s["non-ascii-body"] = mime_input(base[:5] + ["ça va? 日本語 ✉\n"])
    s["boundary-text"] = mime_input(base[:5] + ["--=_0000\r\n=_\r\n.\r\n..\r\n", "<p>--=_</p>"], [("a", "", "b")])
    s["subject-encoded"] = mime_input(base[:4] + ["Grüße =?utf-8?q?x?= " * 20, "b"])
    s["names"] = mime_input(['"Doe, John" <j@x.yz>', ['  spaced  name <s@x.yz>', 'Ünïcödé <u@x.yz>',
                                                       "a" * 250 + " <l@x.yz>"], ["c@x.yz"], ["hidden@x.yz"], "s", "b"])
    s["long-name-spaces"] = mime_input([" " * 200 + "x" * 50 + " <a@b.cc>", ["x@y.zz"], "", "", "s", "b"])
    s["headers"] = mime_input(base + ["", "", ["X-Long", "v" * 900, "X-Utf8", "ünï", "X-Spaces", "a " * 400]])
    s["headers-reserved"] = mime_input(base + ["", "", ["Bcc", "x@y.zz"]])
    s["recipients-100"] = mime_input(["a@b.cc", [f"User {i} <u{i}@example.net>" for i in range(60)],
                                      [f"c{i}@example.net" for i in range(30)], ["b@example.net"], "s", "b"])
    s["injection"] = mime_input(["a@b.cc", ["x@y.zz\r\nBcc: e@v.il"], "", "", "s\r\nBcc: e@v.il", "b"])
    s["empty-body"] = mime_input(base[:5] + [""])
    s["literal-domain"] = mime_input(["a@[192.0.2.1]", ["x@[IPv6:2001:db8::1]"], "", "", "s", "b"])
    return s


def http_input(stream, cuts=(), config=0):
    head = bytes([config, len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts)
    return head + (stream.encode() if isinstance(stream, str) else stream)


def post(path, body, extra=""):
    return f"POST {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {len(body.encode())}\r\n\r\n{body}"


def http_seeds():
    get = "GET /status HTTP/1.1\r\nHost: x\r\n\r\n"
    body = j(SEED_JOB)
    s = {}
    s["get"] = http_input(get)
    s["post"] = http_input(post("/mail/send", body))
    s["pipelined"] = http_input(get + post("/mail/send", body) + "HEAD /status HTTP/1.1\r\n\r\n" + get)
    s["split-everywhere"] = http_input(get * 2 + post("/a", "xyz"), cuts=[1, 2, 3, 5, 8, 13, 17, 18, 19, 30, 34, 40, 50, 60, 70])
    s["split-body"] = http_input(post("/mail/send", body), cuts=[60, 61, 100], config=4)
    s["close-then-more"] = http_input("GET / HTTP/1.1\r\nConnection: close\r\n\r\n" + get)
    s["http10"] = http_input("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + get)
    s["chunked"] = http_input("POST /mail/send HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + get)
    s["smuggle-cl-te"] = http_input("POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    s["cl-bad"] = http_input("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc")
    s["cl-twice-same"] = http_input("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc" + get)
    s["cl-twice-differ"] = http_input("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
    s["body-too-large"] = http_input(post("/mail/send", "x" * 600) + get, config=1)
    s["head-too-large"] = http_input("GET / HTTP/1.1\r\nX-Big: " + "a" * 300 + "\r\n\r\n", config=1)
    s["head-too-large-incomplete"] = http_input("GET / HTTP/1.1\r\nX-Big: " + "a" * 100, config=2)
    s["tiny-limits"] = http_input(post("/a", "12345678") + post("/b", "123456789"), config=2)
    s["no-body-allowed"] = http_input(get + post("/a", "1"), config=3)
    s["obs-fold"] = http_input("GET / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n")
    s["space-before-colon"] = http_input("GET / HTTP/1.1\r\nContent-Length : 3\r\n\r\nabc")
    s["absolute-uri"] = http_input("GET http://x/ HTTP/1.1\r\n\r\nOPTIONS * HTTP/1.1\r\n\r\n")
    s["http2"] = http_input("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    s["nul-in-header"] = http_input(b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n")
    s["late-then-pipelined"] = http_input("GET /late HTTP/1.1\r\n\r\n" + get + "GET /late?wait=5 HTTP/1.1\r\n\r\n" + get,
                                          cuts=[24], config=4)
    s["late-answered-at-end"] = http_input("GET /late HTTP/1.1\r\n\r\n" + get + get)
    s["throw"] = http_input("GET /throw HTTP/1.1\r\n\r\n" + get + "HEAD /throw HTTP/1.1\r\n\r\n" + get)
    s["query"] = http_input("GET /mail/status/x?wait=5&since=not%20started&wait=%zz+1 HTTP/1.1\r\n\r\n")
    s["partial-then-timeout"] = http_input(get + "GET /slow HTTP/1.1\r\nHost:", config=8)
    s["body-timeout"] = http_input("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", config=8)
    s["idle-timeout"] = http_input(get, config=8)
    s["lf-only"] = http_input("GET / HTTP/1.1\nHost: x\n\n", config=8)
    s["expect-continue"] = http_input("POST /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc" + get,
                                      cuts=[63])
    s["expect-other"] = http_input("POST /a HTTP/1.1\r\nExpect: teapot\r\nContent-Length: 3\r\n\r\nabc")
    s["head-refused"] = http_input("HEAD / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
    s["lowercase-method"] = http_input("get / HTTP/1.1\r\n\r\nG(T / HTTP/1.1\r\n\r\n")
    return s


if __name__ == "__main__":
    write("fuzz_job", job_seeds())
    write("fuzz_mime", mime_seeds())
    write("fuzz_http", http_seeds())
    write("fuzz_address", {
        "plain": "bob@example.net",
        "name": "Carol <carol@example.com>",
        "quoted-name": '"Doe, John" <john@example.com>',
        "escaped-quote": '"a \\"b\\" c" <x@y.zz>',
        "angle-only": "<a@b.cc>",
        "quoted-local": '"a b"@x.yz',
        "quoted-local-angle": '"a<b"@x.yz',
        "quoted-local-in-angle": 'N <"a<b>"@x.yz>',
        "literal-v4": "x@[192.0.2.1]",
        "literal-v6": "Name <x@[IPv6:2001:db8::1]>",
        "local-65": "a" * 65 + "@x.yz",
        "address-254": "a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".cc",
        "no-at": "bob.example.net",
        "two-at": "a@b@c.dd",
        "dots": "a..b@c.dd",
        "trailing-dot": "a.@c.dd",
        "crlf": "a@b.cc\r\nBcc: e@v.il",
        "nul": "a@b.cc\x00",
        "utf8-name": "Jöhn Dœ <j@x.yz>",
        "utf8-local": "jö@x.yz",
        "idn-domain": "x@bücher.de",
        "idn-utf8-local": "Jö <jö@BÜCHER.de>",
        "idn-disallowed": "x@\u2603.de",
        "idn-long-label": "x@" + "ü" * 60 + ".de",
        "idn-over-254-as-a-labels": "a" * 64 + "@" + "ü." * 60 + "de",
        "encoded-word-name": "=?utf-8?q?x?= <a@b.cc>",
        "long-name": "n" * 300 + " <a@b.cc>",
        "spaces-name": " " * 100 + "x" + " " * 100 + "y <a@b.cc>",
        "brackets": "> <",
        "empty-angle": "<>",
        "empty": "",
        "tabs": "\tName\t<a@b.cc>\t",
        "invalid-utf8": b"N\xff\xfe <a@b.cc>",
        "specials-name": "a.b;c:d (e) [f] <a@b.cc>",
    })
