"""GET /openapi.json keeps true: the document served (on both ports) is docs/openapi.json;
its paths and methods are the routes the running websmtpd has (it logs its route table at
debug level), and its error codes are the ones the code can produce (the list in
libcore/include/websmtp/common/error_codes.hpp, which every code literal in the sources must
be in), each under the HTTP status the daemon gives it."""

import json
import os
import re
import unittest

from harness import IntegrationTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC_PATH = os.path.join(ROOT, "docs", "openapi.json")
CODES_HPP = os.path.join(ROOT, "libcore", "include", "websmtp", "common", "error_codes.hpp")
SOURCE_DIRS = [os.path.join(ROOT, d) for d in ("libcore", "apps")]

# api.md routes the server does not have yet (the test fails for an entry once it is served).
PENDING_ROUTES = set()
# Codes api.md names that no source of this branch produces yet (same rule).
PENDING_CODES = set()

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
    """{code: {kinds}} from every Error{ErrorKind::kX, "code", ...} / fail(ErrorKind::kX, "code", ...)."""
    pat = re.compile(r'ErrorKind::(k\w+)\s*,\s*"([^"]*)"')
    out = {}
    for top in SOURCE_DIRS:
        for dirpath, _, files in os.walk(top):
            for name in files:
                if name.endswith((".cpp", ".hpp", ".h", ".cc")):
                    with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                        for kind, code in pat.findall(f.read()):
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

    def test_open_without_credentials_when_auth_is_required(self):
        d = self.start_daemon(DELIVERY="sandbox", AUTH_MODE="keys")
        self.assertJsonError(d.post_send({"from": "a@example.org", "to": ["b@example.net"], "subject": "", "body": "x"}),
                             401, "unauthorized")
        self.assertEqual(d.request("GET", "/openapi.json").status, 200)

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


if __name__ == "__main__":
    unittest.main()
