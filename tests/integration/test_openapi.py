"""GET /openapi.json keeps true: the document served (on both ports) is docs/openapi.json;
its paths and methods are the routes the running websmtpd has (it logs its route table at
debug level), and its error codes are the ones the code can produce (the list in
libcore/include/websmtp/common/error_codes.hpp, which every code literal in the sources must
be in), each under the HTTP status the daemon gives it.

Shapes too (OpenApiShapesTest): a real websmtpd, relaying to an aiosmtpd peer and resolving
through the tests' DNS server, is driven so that every route gives each of its success statuses
and its main errors; each answer's status must be documented for that operation and its body
must validate against the documented schema (validate() below: the OpenAPI 3.0 subset the
document uses). Objects are closed: a property the server sends that the schema does not name
fails, unless the schema says additionalProperties."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
import urllib.parse

from harness import WEBSMTPCTL, IntegrationTestCase, clean_env, mail, new_test_id, require_binary, wait_until
from dns_server import DnsServer
from test_webhooks import SECRET as WEBHOOK_SECRET, Receiver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC_PATH = os.path.join(ROOT, "docs", "openapi.json")
CODES_HPP = os.path.join(ROOT, "libcore", "include", "websmtp", "common", "error_codes.hpp")
SOURCE_DIRS = [os.path.join(ROOT, d) for d in ("libcore", "apps")]

# api.md routes the server does not have yet (the test fails for an entry once it is served).
PENDING_ROUTES = set()
# Codes api.md names that no source of this branch produces yet (same rule).
PENDING_CODES = set()
# Answers that differ from the document in a known way another branch fixes (f3-admin): the
# only errors tolerated for that operation and status; the test fails once they are gone, so
# that the entry is dropped. PUT /admin/suppressions/{address} answers {address, reason} here,
# the stored entry (with created) there.
PENDING_SHAPES = {}
# Wrong methods on a documented path answer 405 method_not_allowed, but for these, which answer
# 404 not_found (the test fails for an entry once it is 405).
PENDING_405 = set()

# apps/websmtpd/http/error_status.cpp: the one table from an error kind to a status.
KIND_STATUS = {
    "kInvalid": 400, "kUnauthorized": 401, "kForbidden": 403, "kNotFound": 404, "kMethodNotAllowed": 405,
    "kTimeout": 408, "kConflict": 409, "kLengthRequired": 411, "kTooLarge": 413, "kUnprocessable": 422,
    "kRateLimited": 429, "kHeadersTooLarge": 431, "kInternal": 500, "kUnavailable": 503,
    "kVersionNotSupported": 505,
}
STATUS_OVERRIDES = {"expectation_failed": 417}  # error_status.cpp: expectation_failed_response()

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
ROUTE_LINE = re.compile(r" route (public|admin) ([A-Z]+) (\S+)$", re.M)


def load_spec():
    with open(SPEC_PATH, encoding="utf-8") as f:
        return json.load(f)


def source_codes():
    """{code: {kinds}} from every Error{ErrorKind::kX, "code", ...} / fail(ErrorKind::kX, "code", ...),
    and from calls of a file's own helpers that take the code first and pass it on with a fixed
    kind (keys.cpp: invalid("code", ...) -> fail(ErrorKind::kInvalid, std::move(code), ...))."""
    pat = re.compile(r'ErrorKind::(k\w+)\s*,\s*"([^"]*)"')
    helper = re.compile(r'(\w+)\(std::string(?:_view)? code\b[^)]*\)\s*\{\s*return\s+'
                        r'(?:fail|tl::unexpected\(Error\{?)\(?\s*ErrorKind::(k\w+)\s*,\s*(?:std::move\()?code\b')
    out = {}
    for top in SOURCE_DIRS:
        for dirpath, _, files in os.walk(top):
            for name in files:
                if name.endswith((".cpp", ".hpp", ".h", ".cc")):
                    with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                        text = f.read()
                    found = pat.findall(text)
                    for fn, kind in helper.findall(text):
                        found += [(kind, code) for code in re.findall(r'\b%s\(\s*"([^"]*)"' % fn, text)]
                    for kind, code in found:
                        out.setdefault(code, set()).add(kind)
    return out


def listed_codes():
    with open(CODES_HPP, encoding="utf-8") as f:
        text = f.read()
    body = text[text.index("kErrorCodes = {"):]
    body = body[: body.index("};")]
    codes = re.findall(r'"([^"]*)"', body)
    declared = int(re.search(r"std::array<std::string_view, (\d+)> kErrorCodes", text).group(1))
    return codes, declared


def spec_operations(spec):
    """{(METHOD, path): listeners}."""
    ops = {}
    for path, item in spec["paths"].items():
        listeners = tuple(item.get("x-websmtp-listeners", ["public"]))
        for m in METHODS:
            if m in item:
                ops[(m.upper(), path)] = listeners
    return ops


def prefix_of(spec_path):
    """'/admin/jobs/{ref}/retry' -> ('/admin/jobs/', True); '/status' -> ('/status', False)."""
    i = spec_path.find("{")
    return (spec_path, False) if i < 0 else (spec_path[:i], True)


def served_by(routes, method, spec_path):
    """The server route (method, path as logged) that answers this spec operation, or None.
    A router path with a parameter is a prefix: /mail/status/{param} serves /mail/status/{ref}."""
    prefix, has_param = prefix_of(spec_path)
    for m, path in routes:
        if m != method:
            continue
        if path.endswith("{param}"):
            if has_param and path[: -len("{param}")] == prefix:
                return (m, path)
        elif not has_param and path == spec_path:
            return (m, path)
    return None


class ErrorCodeListTest(unittest.TestCase):
    """Static: the sources, the list in libcore and the document agree on the codes."""

    def test_every_code_literal_is_in_the_libcore_list(self):
        codes, declared = listed_codes()
        self.assertEqual(len(codes), declared, "kErrorCodes' declared size")
        self.assertEqual(len(codes), len(set(codes)), "a code listed twice")
        self.assertEqual(codes, sorted(codes), "keep kErrorCodes sorted")
        for code in codes:
            self.assertRegex(code, r"^[a-z][a-z0-9_]*$")
        missing = sorted(set(source_codes()) - set(codes))
        self.assertEqual(missing, [], "codes used in the sources but not in common/error_codes.hpp")
        unused = sorted(set(codes) - set(source_codes()))
        self.assertEqual(unused, [], "codes listed but produced nowhere")

    def test_the_document_names_every_code_with_its_status(self):
        spec = load_spec()
        codes, _ = listed_codes()
        table = spec["x-error-codes"]
        self.assertEqual(set(table), set(codes) | PENDING_CODES)
        self.assertEqual(PENDING_CODES & set(codes), set(), "a pending code is produced now: drop it from PENDING_CODES")
        self.assertEqual(sorted(spec["components"]["schemas"]["Error"]["properties"]["code"]["enum"]), sorted(table))
        for code, kinds in source_codes().items():
            statuses = {STATUS_OVERRIDES.get(code, KIND_STATUS[k]) for k in kinds}
            self.assertEqual(statuses, {table[code]["status"]}, code)
        for code, entry in table.items():
            self.assertTrue(entry.get("description"), code)
        # Each status's error response lists exactly the codes of that status, and every
        # operation's error statuses are ones that exist.
        responses = spec["components"]["responses"]
        for code, entry in table.items():
            name = "E%d" % entry["status"]
            self.assertIn(name, responses, code)
            enum = responses[name]["content"]["application/json"]["schema"]["allOf"][1]["properties"]["code"]["enum"]
            self.assertIn(code, enum)
        for name, resp in responses.items():
            enum = resp["content"]["application/json"]["schema"]["allOf"][1]["properties"]["code"]["enum"]
            for code in enum:
                self.assertEqual("E%d" % table[code]["status"], name, code)
        for (method, path), _ in spec_operations(spec).items():
            for status, resp in spec["paths"][path][method.lower()]["responses"].items():
                if "$ref" in resp:
                    self.assertEqual(resp["$ref"], "#/components/responses/E" + status, (method, path))

    def test_the_document_is_valid_openapi_3(self):
        spec = load_spec()
        self.assertRegex(spec["openapi"], r"^3\.[01]\.\d+$")
        try:
            from openapi_spec_validator import validate
        except ImportError:
            # Not packaged in Debian: the structural checks above and below still run.
            validate = None
        if validate:
            validate(spec)
        # Every $ref resolves.
        text = json.dumps(spec)
        for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
            node = spec
            for part in ref.split("/"):
                self.assertIn(part, node, ref)
                node = node[part]
        # Path parameters are declared.
        for path, item in spec["paths"].items():
            for m in METHODS:
                if m in item:
                    declared = {p["name"] for p in item[m].get("parameters", []) if p["in"] == "path"}
                    self.assertEqual(declared, set(re.findall(r"\{(\w+)\}", path)), (m, path))


class OpenApiServedTest(IntegrationTestCase):

    def setUp(self):
        self.daemon = self.start_daemon(DELIVERY="sandbox", LOG_LEVEL="debug")

    def routes(self):
        """{listener: {(METHOD, path)}} from the route table websmtpd logs at start."""
        out = {"public": set(), "admin": set()}
        for listener, method, path in ROUTE_LINE.findall(self.daemon.log_text()):
            out[listener].add((method, path))
        self.assertTrue(out["public"] and out["admin"], "no route table in the log")
        return out

    def test_served_on_both_ports_as_checked_in(self):
        spec = load_spec()
        for admin in (False, True):
            r = self.daemon.request("GET", "/openapi.json", admin=admin)
            self.assertEqual(r.status, 200)
            self.assertTrue(r.header("Content-Type").startswith("application/json"))
            self.assertEqual(r.json(), spec)

    def test_open_on_the_public_port_the_token_on_the_admin_port(self):
        """The public port serves it to anyone; the admin port, like every admin route, wants
        ADMIN_TOKEN when it is set (README; the document's security on /openapi.json)."""
        d = self.start_daemon(DELIVERY="sandbox", AUTH_MODE="keys", ADMIN_TOKEN="t0ken-t0ken-t0ken-t0ken")
        self.assertJsonError(d.post_send({"from": "a@example.org", "to": ["b@example.net"], "subject": "", "body": "x"}),
                             401, "unauthorized")
        self.assertEqual(d.request("GET", "/openapi.json").status, 200)
        r = d.request("GET", "/openapi.json", admin=True)
        self.assertJsonError(r, 401, "unauthorized")
        self.assertEqual(r.header("WWW-Authenticate"), "Bearer")
        r = d.request("GET", "/openapi.json", admin=True, headers={"Authorization": "Bearer t0ken-t0ken-t0ken-t0ken"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), load_spec())
        op = load_spec()["paths"]["/openapi.json"]["get"]
        self.assertEqual(op["security"], [{}, {"adminToken": []}])
        self.assertIn("401", op["responses"])

    def test_paths_and_methods_are_the_routes_served(self):
        spec = load_spec()
        ops = spec_operations(spec)
        routes = self.routes()
        for (method, path) in PENDING_ROUTES:
            self.assertIn((method, path), ops, "a pending route must be in the document")
        for (method, path), listeners in sorted(ops.items()):
            for listener in ("public", "admin"):
                route = served_by(routes[listener], method, path)
                if (method, path) in PENDING_ROUTES:
                    self.assertIsNone(route, "%s %s is served now: remove it from PENDING_ROUTES" % (method, path))
                elif listener in listeners:
                    self.assertIsNotNone(route, "%s %s is in the document, not served on the %s port"
                                         % (method, path, listener))
        for listener, served in routes.items():
            for method, path in sorted(served):
                covered = any(served_by({(method, path)}, m, p) and listener in ls for (m, p), ls in ops.items())
                self.assertTrue(covered, "%s %s (%s port) is served but not in the document" % (method, path, listener))

    def test_each_documented_operation_answers_as_routed(self):
        """Each operation served answers neither 404 not_found (no route) nor 405."""
        spec = load_spec()
        for (method, path), listeners in sorted(spec_operations(spec).items()):
            if (method, path) in PENDING_ROUTES:
                continue
            concrete = re.sub(r"\{\w+\}", "00000000-0000-4000-8000-000000000000", path)
            for listener in listeners:
                r = self.daemon.request(method, concrete, body=b"{}" if method in ("POST", "PUT") else None,
                                        headers={"Content-Type": "application/json"}, admin=listener == "admin")
                code = r.json().get("code") if r.body[:1] == b"{" else None
                self.assertNotEqual(r.status, 405, (method, path, listener, r.body[:200]))
                self.assertFalse(r.status == 404 and code == "not_found", (method, path, listener))
                if r.status >= 400:
                    self.assertIn(code, spec["x-error-codes"], (method, path, r.body[:200]))
                    self.assertIn(str(r.status), spec["paths"][path][method.lower()]["responses"], (method, path, code))


# -- a validator for the OpenAPI 3.0 schema subset the document uses --------------------------

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
JSON_TYPES = {"string": (str,), "boolean": (bool,), "array": (list,), "object": (dict,), "number": (int, float),
              "integer": (int,)}


def deref(schema, spec):
    while "$ref" in schema:
        node = spec
        for part in schema["$ref"][2:].split("/"):
            node = node[part]
        schema = node
    return schema


def object_keys(schema, spec):
    """(property names, open): what a schema and its allOf parts name; open when one of them
    allows other properties (additionalProperties true or a schema) or names none at all."""
    schema = deref(schema, spec)
    names = set(schema.get("properties", {}))
    is_open = schema.get("additionalProperties", False) is not False
    for part in schema.get("allOf", []):
        n, o = object_keys(part, spec)
        names |= n
        is_open = is_open or o
    return names, is_open


def validate(schema, value, spec, where="$", part_of_all_of=False):
    """The errors (a list of "path: what") of `value` against an OpenAPI 3.0 schema: type (with
    nullable), enum, format uuid, required, properties, additionalProperties, items,
    minItems/maxItems, allOf, oneOf, anyOf, $ref. Objects are closed (see object_keys) except
    inside an allOf part, where the allOf as a whole is checked."""
    schema = deref(schema, spec)
    errors = []
    if value is None:
        if schema.get("nullable"):
            return []
        if "type" in schema:
            return ["%s: null, not nullable" % where]
    for part in schema.get("allOf", []):
        errors += validate(part, value, spec, where, part_of_all_of=True)
    for key, needed in (("oneOf", lambda n: n == 1), ("anyOf", lambda n: n >= 1)):
        if key in schema:
            n = sum(1 for s in schema[key] if not validate(s, value, spec, where))
            if not needed(n):
                errors.append("%s: %d of the %s branches match %r" % (where, n, key, value))
    if value is None:
        return errors
    t = schema.get("type")
    if t:
        if not isinstance(value, JSON_TYPES[t]) or (t in ("integer", "number") and isinstance(value, bool)):
            return errors + ["%s: %r is not %s" % (where, value, t)]
    if "enum" in schema and value not in schema["enum"]:
        errors.append("%s: %r not in %r" % (where, value, schema["enum"]))
    if schema.get("format") == "uuid" and isinstance(value, str) and not UUID.match(value):
        errors.append("%s: %r is not a uuid" % (where, value))
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                errors.append("%s.%s: required, missing" % (where, name))
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, v in value.items():
            if name in props:
                errors += validate(props[name], v, spec, "%s.%s" % (where, name))
            elif isinstance(extra, dict):
                errors += validate(extra, v, spec, "%s.%s" % (where, name))
        if not part_of_all_of:
            names, is_open = object_keys(schema, spec)
            if names and not is_open:
                errors += ["%s.%s: not in the document" % (where, n) for n in sorted(set(value) - names)]
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            errors.append("%s: %d items" % (where, len(value)))
        if "items" in schema:
            for i, v in enumerate(value):
                errors += validate(schema["items"], v, spec, "%s[%d]" % (where, i))
    return errors


class ValidatorTest(unittest.TestCase):
    """The validator finds what it must (else the shape checks below would pass anything)."""

    SPEC = {"components": {"schemas": {
        "A": {"type": "object", "required": ["id"], "properties": {"id": {"type": "string", "format": "uuid"},
                                                                     "n": {"type": "integer", "nullable": True}}},
        "B": {"allOf": [{"$ref": "#/components/schemas/A"},
                        {"type": "object", "properties": {"s": {"type": "string", "enum": ["x", "y"]}}}]},
        "C": {"oneOf": [{"type": "string", "nullable": True}, {"type": "array", "items": {"type": "string"}}]},
        "M": {"type": "object", "additionalProperties": {"type": "string"}}}}}
    ID = "f683a80c-ba2d-4285-8e1d-4aeaeb37a729"

    def errors(self, name, value):
        return validate({"$ref": "#/components/schemas/" + name}, value, self.SPEC)

    def test_good_values_pass(self):
        self.assertEqual(self.errors("A", {"id": self.ID, "n": None}), [])
        self.assertEqual(self.errors("B", {"id": self.ID, "n": 3, "s": "x"}), [])
        for v in (None, "a", ["a", "b"]):
            self.assertEqual(self.errors("C", v), [], v)
        self.assertEqual(self.errors("M", {"k": "v"}), [])

    def test_bad_values_fail(self):
        cases = [("A", {}, "$.id: required"), ("A", {"id": "nope"}, "not a uuid"), ("A", {"id": self.ID, "n": "1"},
                 "is not integer"), ("A", {"id": self.ID, "n": True}, "is not integer"),
                 ("A", {"id": self.ID, "x": 1}, "$.x: not in the document"), ("A", None, "not nullable"),
                 ("B", {"id": self.ID, "s": "z"}, "not in"), ("B", {"id": self.ID, "t": 1}, "$.t: not in the document"),
                 ("C", 3, "0 of the oneOf"), ("C", [1], "0 of the oneOf"), ("M", {"k": 1}, "$.k: 1 is not string")]
        for name, value, expected in cases:
            errs = self.errors(name, value)
            self.assertTrue(any(expected in e for e in errs), (name, value, errs))


# -- every route's answers against the document -----------------------------------------------

ADMIN_TOKEN = "admin-t0ken-for-the-openapi-test"


def ctl(*args):
    p = subprocess.run([WEBSMTPCTL] + list(args), capture_output=True, env=clean_env(), timeout=60,
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8"), p.stderr.decode("utf-8")


class OpenApiShapesTest(IntegrationTestCase):
    """Each route of the document, driven against the real websmtpd and an aiosmtpd peer, gives
    each documented success status (and its main errors) with a body the document describes."""

    def setUp(self):
        self.spec = load_spec()
        self.seen = set()  # (METHOD, spec path, status)

    def call(self, daemon, method, spec_path, expect, params=None, query="", body=None, admin=None, headers=None,
             code=None):
        """One request to `spec_path` with its {params} filled in; the answer must have status
        `expect`, be documented for the operation, and validate. Returns the Response."""
        op = self.spec["paths"][spec_path][method.lower()]
        listeners = self.spec["paths"][spec_path].get("x-websmtp-listeners", ["public"])
        admin = listeners == ["admin"] if admin is None else admin
        path = spec_path
        for name, v in (params or {}).items():
            path = path.replace("{%s}" % name, urllib.parse.quote(v, safe="@"))
        h = dict(headers or {})
        if admin:
            h.setdefault("Authorization", "Bearer " + ADMIN_TOKEN)
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        r = daemon.request(method, path + query, body=data, headers=h, admin=admin)
        what = "%s %s%s -> %d %r" % (method, path, query, r.status, r.body[:400])
        self.assertEqual(r.status, expect, what)
        self.assert_documented(method, spec_path, r, what)
        if code is not None:
            self.assertEqual(r.json()["code"], code, what)
        self.seen.add((method, spec_path, r.status))
        return r

    def assert_documented(self, method, spec_path, r, what):
        responses = self.spec["paths"][spec_path][method.lower()]["responses"]
        self.assertIn(str(r.status), responses, "status not documented: " + what)
        resp = deref(responses[str(r.status)], self.spec)
        content = resp.get("content")
        if not content:
            self.assertEqual(r.body, b"", what)
            return
        ctype = r.header("Content-Type") or ""
        media = [m for m in content if ctype.split(";")[0].strip() == m.split(";")[0].strip()]
        self.assertTrue(media, "Content-Type %r, documented %r: %s" % (ctype, list(content), what))
        if not media[0].startswith("application/json"):
            self.assertEqual(ctype.replace(" ", ""), media[0].replace(" ", ""), what)
            return
        errors = validate(content[media[0]]["schema"], r.json(), self.spec)
        pending = PENDING_SHAPES.get((method, spec_path, r.status))
        if pending is not None:
            self.assertTrue(errors, "%s answers as documented now: drop it from PENDING_SHAPES" % what)
            errors = [e for e in errors if e not in pending]
        self.assertEqual(errors, [], what)

    def wait_job(self, daemon, ref, predicate, what):
        def check():
            code, doc = daemon.status(ref)
            return doc if code == 200 and predicate(doc) else None
        return wait_until(check, 30, what=what)

    def test_every_route_answers_as_documented(self):
        peer = self.start_peer()
        d = self.start_daemon(**self.relay_env(peer, RETRY_MIN="60s", RETRY_MAX="120s", MAX_RECIPIENTS=5,
                                               ADMIN_TOKEN=ADMIN_TOKEN))
        self.public_routes(d)
        self.admin_routes(d)
        self.domain_checks()
        self.authenticated_routes()
        self.webhook(peer)
        self.call(d, "POST", "/mail/send", 400, body=mail(callback_url="https://example.org/hook"),
                  code="webhooks_disabled")
        self.wrong_methods(d)
        # Every documented success status was produced and checked.
        for path, item in self.spec["paths"].items():
            for m in METHODS:
                if m in item:
                    for status in item[m]["responses"]:
                        if status.startswith("2"):
                            self.assertIn((m.upper(), path, int(status)), self.seen, "never produced")

    def public_routes(self, d):
        tid = new_test_id()
        job = mail(to=["bob@example.net"], test_id=tid)
        r = self.call(d, "POST", "/mail/send", 202, body=job, headers={"Idempotency-Key": "k-" + tid})
        ref = r.json()["ref"]
        self.assertEqual(r.header("Location"), "/mail/status/" + ref)
        self.call(d, "POST", "/mail/send", 200, body=job, headers={"Idempotency-Key": "k-" + tid})
        self.call(d, "POST", "/mail/send", 409, body=mail(subject="other"), headers={"Idempotency-Key": "k-" + tid},
                  code="idempotency_conflict")
        self.call(d, "POST", "/mail/send", 400, body={"from": "a@example.org", "to": ["b@example.net"], "body": "x"},
                  code="missing_field")
        self.call(d, "POST", "/mail/send", 400, body=b"{nope", code="invalid_json")
        self.call(d, "POST", "/mail/send", 422, body=mail(to=["r%d@example.net" % i for i in range(6)]),
                  code="too_many_recipients")
        batch = {"jobs": [mail(to=["bob@example.net"]), mail(to=["carol@example.net"], cc=["dan@example.net"])]}
        r = self.call(d, "POST", "/mail/batch", 202, body=batch, headers={"Idempotency-Key": "b-" + tid})
        self.assertEqual(len(r.json()["refs"]), 2)
        self.call(d, "POST", "/mail/batch", 200, body=batch, headers={"Idempotency-Key": "b-" + tid})
        self.call(d, "POST", "/mail/batch", 400, body={"jobs": [mail(), mail(to=["not an address"])]},
                  code="invalid_address")
        self.call(d, "POST", "/mail/batch", 422, body={"jobs": []}, code="invalid_batch_size")

        self.call(d, "GET", "/mail/status/{ref}", 200, {"ref": ref}, query="?wait=5&since=not%20started")
        d.wait_completed(ref)
        r = self.call(d, "GET", "/mail/status/{ref}", 200, {"ref": ref})
        self.assertEqual(r.json()["recipients"][0]["state"], "delivered")
        self.call(d, "GET", "/mail/status/{ref}", 200, {"ref": ref}, query="?wait=0")
        self.call(d, "GET", "/mail/status/{ref}", 400, {"ref": ref}, query="?wait=99", code="invalid_wait")
        self.call(d, "GET", "/mail/status/{ref}", 400, {"ref": "nope"}, code="invalid_ref")
        self.call(d, "GET", "/mail/status/{ref}", 404, {"ref": "00000000-0000-4000-8000-000000000000"},
                  code="unknown_ref")
        for path in ("/status", "/healthz", "/readyz", "/openapi.json"):
            self.call(d, "GET", path, 200)
        self.call(d, "GET", "/openapi.json", 200, admin=True)
        self.call(d, "GET", "/openapi.json", 401, admin=True, headers={"Authorization": "Bearer wrong"},
                  code="unauthorized")
        self.call(d, "GET", "/openapi.json", 403, admin=True, headers={"Host": "evil.example"}, code="bad_host")

    def admin_routes(self, d):
        # A completed job (delivered and bounced), and two that stay deferred (RETRY_MIN 60s).
        done = d.submit(mail(to=["bob@example.net", "reject1@example.net"]))
        deferred = [d.submit(mail(to=["defer%d@example.net" % i, "bob@example.net"])) for i in (1, 2)]
        d.wait_completed(done)
        for ref in deferred:
            self.wait_job(d, ref, lambda s: any(x["state"] == "deferred" for x in s["recipients"]), ref + " deferred")

        self.call(d, "GET", "/admin/queue", 200)
        self.call(d, "GET", "/admin/queue", 401, headers={"Authorization": "Bearer wrong"}, code="unauthorized")
        r = self.call(d, "GET", "/admin/jobs", 200, query="?limit=1")
        self.assertIsNotNone(r.json()["next"])
        r = self.call(d, "GET", "/admin/jobs", 200, query="?state=deferred")
        self.assertTrue(all(j["next_attempt"] for j in r.json()["jobs"]), r.json())
        r = self.call(d, "GET", "/admin/jobs", 200, query="?state=completed&limit=1000")
        self.assertIsNone(r.json()["next"])
        self.assertIsNone(r.json()["jobs"][0]["next_attempt"])
        self.call(d, "GET", "/admin/jobs", 400, query="?state=lost", code="invalid_state")
        self.call(d, "GET", "/admin/jobs", 400, query="?limit=0", code="invalid_limit")
        self.call(d, "GET", "/admin/jobs", 400, query="?after=nope", code="invalid_after")

        r = self.call(d, "GET", "/admin/jobs/{ref}", 200, {"ref": done}, query="?body=1")
        self.assertIsNone(r.json()["submitted_by"])
        self.assertTrue(r.json()["recipients"][0]["history"])
        r = self.call(d, "GET", "/admin/jobs/{ref}", 200, {"ref": deferred[0]}, query="?body=1")
        self.assertIsInstance(r.json()["message"], str)
        self.assertIsNotNone(r.json()["next_attempt"])
        self.call(d, "GET", "/admin/jobs/{ref}", 200, {"ref": deferred[0]})
        self.call(d, "GET", "/admin/jobs/{ref}", 404, {"ref": "00000000-0000-4000-8000-000000000000"},
                  code="unknown_ref")
        self.call(d, "GET", "/admin/jobs/{ref}", 400, {"ref": "nope"}, code="invalid_ref")

        r = self.call(d, "POST", "/admin/jobs/{ref}/retry", 200, {"ref": deferred[0]})
        self.assertEqual(r.json()["ref"], deferred[0])
        self.call(d, "POST", "/admin/jobs/{ref}/retry", 409, {"ref": done}, code="already_completed")
        self.call(d, "POST", "/admin/jobs/{ref}/retry", 404, {"ref": "00000000-0000-4000-8000-000000000000"},
                  code="unknown_ref")
        self.call(d, "POST", "/admin/retry", 200)
        r = self.call(d, "POST", "/admin/jobs/{ref}/cancel", 200, {"ref": deferred[1]})
        self.assertEqual(r.json()["status"], "completed")
        self.call(d, "POST", "/admin/jobs/{ref}/cancel", 409, {"ref": done}, code="already_completed")
        self.call(d, "POST", "/admin/jobs/{ref}/cancel", 400, {"ref": "nope"}, code="invalid_ref")
        self.assertTrue(self.call(d, "POST", "/admin/pause", 200).json()["paused"])
        self.assertFalse(self.call(d, "POST", "/admin/resume", 200).json()["paused"])

        # reject1@ bounced (550 5.1.1): suppressed with its reply.
        r = self.call(d, "GET", "/admin/suppressions", 200)
        self.assertIn("reject1@example.net", [s["address"] for s in r.json()["suppressions"]])
        self.call(d, "PUT", "/admin/suppressions/{address}", 201, {"address": "Gone@Example.net"})
        self.call(d, "PUT", "/admin/suppressions/{address}", 200, {"address": "gone@example.net"})
        self.call(d, "PUT", "/admin/suppressions/{address}", 400, {"address": "nope"}, code="invalid_address")
        self.call(d, "GET", "/admin/suppressions", 200)
        self.call(d, "DELETE", "/admin/suppressions/{address}", 204, {"address": "gone@example.net"})
        self.call(d, "DELETE", "/admin/suppressions/{address}", 404, {"address": "gone@example.net"},
                  code="not_suppressed")

        r = self.call(d, "POST", "/admin/keys", 201, body={"name": "site", "type": "publishable",
                                                            "origins": ["https://example.org"], "rate_per_minute": 5})
        pk = r.json()
        self.assertEqual(r.header("Location"), "/admin/keys/" + pk["id"])
        self.call(d, "POST", "/admin/keys", 201, body={"name": "server", "senders": ["*@example.org"]})
        self.call(d, "POST", "/admin/keys", 400, body={"name": "x", "origins": ["https://example.org"]},
                  code="invalid_value")
        self.call(d, "POST", "/admin/keys", 400, body={"type": "secret"}, code="missing_field")
        self.call(d, "POST", "/admin/keys", 400, body={"name": "y", "colour": "red"}, code="unknown_field")
        self.call(d, "DELETE", "/admin/keys/{id}", 204, {"id": pk["id"]})
        self.call(d, "DELETE", "/admin/keys/{id}", 404, {"id": "nope"}, code="unknown_key")
        r = self.call(d, "GET", "/admin/keys", 200)
        self.assertTrue(any(k.get("revoked_at") for k in r.json()["keys"]))
        r = self.call(d, "GET", "/metrics", 200)
        self.assertIn(b"websmtp_submits_total", r.body)
        self.call(d, "GET", "/metrics", 401, headers={"Authorization": "Bearer wrong"}, code="unauthorized")

    def domain_checks(self):
        """The domain check's report in its shapes: all good, no DKIM key, a key not published, a
        null MX and no SPF, a domain that does not exist, and a resolver failure."""
        require_binary(WEBSMTPCTL, "WEBSMTPCTL")
        keys = tempfile.mkdtemp(prefix="websmtp-openapi-dkim.")
        self.addCleanup(shutil.rmtree, keys, ignore_errors=True)
        rc, out, err = ctl("dkim", "keygen", "--domain", "good.example", "--selector", "s1", "--dir", keys, "--json")
        self.assertEqual(rc, 0, err)
        rec = json.loads(out)
        rc, _, err = ctl("dkim", "keygen", "--domain", "unpublished.example", "--selector", "s1", "--dir", keys)
        self.assertEqual(rc, 0, err)
        zone = {"good.example": {"TXT": ["v=spf1 ip4:192.0.2.0/28 -all"], "MX": [(10, "mx.good.example")]},
                "mx.good.example": {"A": ["192.0.2.25"]},
                rec["name"]: {"TXT": [rec["strings"]]},
                "_dmarc.good.example": {"TXT": ["v=DMARC1; p=reject"]},
                "unpublished.example": {"TXT": ["v=spf1 -all"], "A": ["192.0.2.30"]},
                "nullmx.example": {"MX": [(0, "")]},
                "broken.example": {"SERVFAIL": True}}
        dns = DnsServer(zone)
        self.addCleanup(dns.stop)
        d = self.start_daemon(DELIVERY="sandbox", DNS_SERVER=dns.address, OUTBOUND_IP="192.0.2.10",
                              DKIM_KEYS_DIR=keys, ADMIN_TOKEN=ADMIN_TOKEN)
        for domain in ("good.example", "nokey.example", "unpublished.example", "nullmx.example", "broken.example"):
            r = self.call(d, "GET", "/admin/domains/{domain}/check", 200, {"domain": domain})
            self.assertEqual(r.json()["ok"], domain == "good.example", r.json())
        self.call(d, "GET", "/admin/domains/{domain}/check", 400, {"domain": "no_such"}, code="invalid_domain")

    def authenticated_routes(self):
        """AUTH_MODE=keys: status tokens in the submit answers, 401, 403 and 429."""
        peer = self.start_peer()
        d = self.start_daemon(**self.relay_env(peer, AUTH_MODE="keys", ADMIN_TOKEN=ADMIN_TOKEN,
                                               WEBHOOK_SECRET=WEBHOOK_SECRET))
        key = self.call(d, "POST", "/admin/keys", 201,
                        body={"name": "k", "senders": ["*@example.org"], "rate_per_minute": 3}).json()["key"]
        auth = {"Authorization": "Bearer " + key}
        r = self.call(d, "POST", "/mail/send", 202, body=mail(), headers=auth)
        ref, token = r.json()["ref"], r.json()["status_token"]
        r = self.call(d, "POST", "/mail/batch", 202, body={"jobs": [mail(), mail()]}, headers=auth)
        self.assertEqual(len(r.json()["status_tokens"]), 2)
        self.call(d, "GET", "/mail/status/{ref}", 200, {"ref": ref}, query="?token=" + token)
        self.call(d, "GET", "/mail/status/{ref}", 200, {"ref": ref}, headers=auth)
        self.call(d, "GET", "/mail/status/{ref}", 401, {"ref": ref}, code="unauthorized")
        self.call(d, "POST", "/mail/send", 401, body=mail(), code="unauthorized")
        self.call(d, "POST", "/mail/send", 403, body=mail(sender="eve@example.com"), headers=auth, code="forbidden")
        self.call(d, "POST", "/mail/send", 429, body=mail(), headers=auth, code="rate_limited")
        key = self.call(d, "POST", "/admin/keys", 201, body={"name": "k2"}).json()["key"]
        auth = {"Authorization": "Bearer " + key}
        self.call(d, "POST", "/mail/send", 400, body=mail(callback_url="http://127.0.0.1:9/hook"), headers=auth,
                  code="callback_url_not_public")
        self.call(d, "POST", "/mail/send", 400, body=mail(callback_url="ftp://example.org/hook"), headers=auth,
                  code="invalid_callback_url")
        r = self.call(d, "GET", "/admin/jobs/{ref}", 200, {"ref": ref})
        self.assertIsInstance(r.json()["submitted_by"], str)

    def webhook(self, peer):
        """The job.completed event POSTed to a callback_url is the documented callback's body."""
        receiver = Receiver()
        self.addCleanup(receiver.stop)
        d = self.start_daemon(**self.relay_env(peer, WEBHOOK_SECRET=WEBHOOK_SECRET, WEBHOOK_ALLOW_PRIVATE="true",
                                               WEBHOOK_RETRY_MIN="1s"))
        ref = self.call(d, "POST", "/mail/send", 202, body=mail(callback_url=receiver.url())).json()["ref"]
        req = receiver.wait_for(1)[0]
        callback = self.spec["paths"]["/mail/send"]["post"]["callbacks"]["jobCompleted"]
        op = callback["{$request.body#/callback_url}"]["post"]
        for p in op["parameters"]:
            self.assertIn(p["name"].lower(), {k.lower() for k in req["headers"]}, p["name"])
        event = json.loads(req["body"])
        self.assertEqual(event["data"]["id"], ref)
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        self.assertEqual(validate(schema, event, self.spec), [], event)

    def wrong_methods(self, d):
        """A documented path asked with a method it does not have: 405 method_not_allowed."""
        ref = "00000000-0000-4000-8000-000000000000"
        for spec_path, item in sorted(self.spec["paths"].items()):
            listeners = item.get("x-websmtp-listeners", ["public"])
            path = re.sub(r"\{\w+\}", lambda m: "example.org" if m.group(0) == "{domain}" else ref, spec_path)
            for m in ("GET", "POST", "PUT", "DELETE"):
                if m.lower() in item:
                    continue
                h = {"Content-Type": "application/json"}
                if listeners == ["admin"]:
                    h["Authorization"] = "Bearer " + ADMIN_TOKEN
                r = d.request(m, path, body=b"{}" if m in ("POST", "PUT") else None, headers=h,
                              admin=listeners == ["admin"])
                what = "%s %s -> %d %r" % (m, path, r.status, r.body[:300])
                if (m, spec_path) in PENDING_405:
                    self.assertEqual((r.status, r.json()["code"]), (404, "not_found"),
                                     "%s: drop it from PENDING_405" % what)
                    continue
                self.assertEqual(r.status, 405, what)
                self.assertEqual(r.json()["code"], "method_not_allowed", what)
                schema = self.spec["components"]["responses"]["E405"]["content"]["application/json"]["schema"]
                self.assertEqual(validate(schema, r.json(), self.spec), [], what)


if __name__ == "__main__":
    unittest.main()
