#include "websmtp/job/validation.hpp"

#include <algorithm>
#include <array>
#include <cctype>

#include <nlohmann/json.hpp>

#include "websmtp/common/base64.hpp"
#include "websmtp/common/idn.hpp"
#include "websmtp/common/text.hpp"
#include "websmtp/job/strict_json.hpp"
#include "websmtp/message/mime.hpp"
#include "websmtp/webhook/destination.hpp"

namespace websmtp::job {

namespace {

using nlohmann::json;

bool has_control_breaks(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

tl::unexpected<Error> injection(const std::string& field) {
  return fail(ErrorKind::kInvalid, "header_injection", "CR, LF and NUL characters are not allowed in " + field, field);
}

bool is_atext(unsigned char c) {
  if (std::isalnum(c)) return true;
  static constexpr std::string_view kSpecials = "!#$%&'*+-/=?^_`{|}~";
  return kSpecials.find(static_cast<char>(c)) != std::string_view::npos;
}

// An address literal ([192.0.2.1], [IPv6:...]) is no domain here: delivery looks every domain
// up in the DNS, and mail to a bare IP address is what spam filters and relays refuse anyway.
bool valid_domain(std::string_view d) {
  if (d.empty() || d.size() > 253 || d.front() == '[') return false;
  std::size_t start = 0;
  while (true) {
    auto dot = d.find('.', start);
    auto label = d.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-')) return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

// Why a domain written in U-labels (or mixing them with ASCII labels) is refused, or empty when
// it is accepted: libidn2 must convert it (common/idn.hpp: IDNA2008, UTS #46 non-transitional;
// what it refuses is refused), its A-label form must be a valid ASCII domain, and the address
// with that form must fit 254 octets, since the envelope and the headers carry it (api.md:
// internationalised domains are sent as A-labels). Empty as well for an ASCII domain.
std::string idn_problem(std::string_view local, std::string_view domain) {
  if (!has_non_ascii(domain)) return {};
  std::string why;
  const auto ascii = to_ascii_domain(domain, &why);
  if (!ascii) return "the domain is not a valid internationalised domain name (IDNA2008: " + why + ")";
  if (!valid_domain(*ascii))
    return "the domain's A-label form '" + *ascii + "' is not a valid domain name";
  if (local.size() + 1 + ascii->size() > 254) return "with its domain in A-labels the address is over 254 octets";
  return {};
}

// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF).
bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    const std::size_t n = c >= 0xC2 && c <= 0xDF ? 1 : c >= 0xE0 && c <= 0xEF ? 2 : c >= 0xF0 && c <= 0xF4 ? 3 : 0;
    if (n == 0 || s.size() - i <= n) return false;  // not a lead byte, or cut short
    const auto c1 = static_cast<unsigned char>(s[i + 1]);
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F))
      return false;  // overlong, a surrogate, or past U+10FFFF
    for (std::size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n + 1;
  }
  return true;
}

// A local part may hold UTF-8 (RFC 6531 3.3: atext and qtextSMTP gain UTF8-non-ascii); such a
// recipient then needs a peer that offers SMTPUTF8 (the SMTP session decides, per peer).
bool valid_local(std::string_view l) {
  if (l.empty() || l.size() > 64 || !valid_utf8(l)) return false;
  if (l.front() == '"') {
    if (l.size() < 2 || l.back() != '"') return false;
    for (std::size_t i = 1; i + 1 < l.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(l[i]);
      if (c == '\\') {  // quoted-pairSMTP (RFC 5321 4.1.2): a backslash and printable ASCII
        if (++i + 1 >= l.size()) return false;
        unsigned char escaped = static_cast<unsigned char>(l[i]);
        if (escaped < 32 || escaped > 126) return false;
        continue;
      }
      if (c < 32 || c == 127 || c == '"') return false;  // over 127: UTF-8, checked above
    }
    return true;
  }
  if (l.front() == '.' || l.back() == '.' || l.find("..") != std::string_view::npos) return false;
  return std::all_of(l.begin(), l.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return c == '.' || u >= 0x80 || is_atext(u);
  });
}

// Why `id` cannot be an attachment's content_id, or empty when it can. The id becomes
// "Content-ID: <id>" (RFC 2392: a msg-id, RFC 5322 3.6.4), so it takes msg-id characters only:
// dot-atom text on each side of at most one '@'. "logo" (no '@') is not a strict msg-id, but
// it is what clients and other mail APIs send and every mail client resolves "cid:logo" by it.
std::string content_id_problem(std::string_view id) {
  if (id.empty()) return "must not be empty";
  if (id.size() > kMaxContentIdBytes) return "is longer than " + std::to_string(kMaxContentIdBytes) + " bytes";
  if (id.find_first_of("<>") != std::string_view::npos)
    return "is written without angle brackets: \"logo\" becomes Content-ID: <logo>";
  const std::size_t at = id.find('@');
  if (at != std::string_view::npos && id.find('@', at + 1) != std::string_view::npos)
    return "may contain at most one '@'";
  const std::string_view left = id.substr(0, at);
  const std::string_view right = at == std::string_view::npos ? std::string_view() : id.substr(at + 1);
  if (at != std::string_view::npos && (left.empty() || right.empty())) return "must have text on both sides of '@'";
  for (std::string_view side : {left, right}) {
    if (side.empty()) continue;
    if (side.front() == '.' || side.back() == '.' || side.find("..") != std::string_view::npos)
      return "must not start or end with '.' or hold \"..\" (on either side of '@')";
  }
  for (char c : id)
    if (c != '.' && c != '@' && !is_atext(static_cast<unsigned char>(c)))
      return "may only hold letters, digits, '.', '@' and !#$%&'*+-/=?^_`{|}~";
  return {};
}

bool is_token_char(char ch) {  // RFC 2045 5.1: any CHAR but SPACE, CTLs and tspecials
  const auto c = static_cast<unsigned char>(ch);
  return c > 32 && c < 127 && std::string_view("()<>@,;:\\\"/[]?=").find(ch) == std::string_view::npos;
}

// An attachment's content_type, `type/subtype *(";" attribute "=" (token / quoted-string))`
// (RFC 2045 5.1), in the form the part's header gets: type and subtype in lower case, "; "
// between parameters, a quoted value as written. A `name` parameter is dropped: the part's
// name is the filename's, written by the gateway. Unexpected: why it is refused.
tl::expected<std::string, std::string> canonical_content_type(std::string_view ct) {
  const tl::unexpected<std::string> syntax(
      "must be type/subtype, optionally with parameters (text/plain; charset=utf-8)");
  std::size_t i = 0;
  auto skip_space = [&] {
    while (i < ct.size() && (ct[i] == ' ' || ct[i] == '\t')) ++i;
  };
  auto token = [&] {
    const std::size_t start = i;
    while (i < ct.size() && is_token_char(ct[i])) ++i;
    return ct.substr(start, i - start);
  };
  auto lower = [](std::string_view t) {
    std::string out(t);
    for (char& c : out) c = ascii_lower(c);
    return out;
  };
  skip_space();
  const auto type = token();
  if (type.empty() || i >= ct.size() || ct[i] != '/') return syntax;
  ++i;
  const auto subtype = token();
  if (subtype.empty()) return syntax;
  std::string out = lower(type) + "/" + lower(subtype);
  std::vector<std::string> names;
  while (true) {
    skip_space();
    if (i == ct.size()) break;
    if (ct[i] != ';') return syntax;
    ++i;
    skip_space();
    if (i == ct.size()) break;  // a trailing ';' says nothing
    const std::string name = lower(token());
    if (name.empty() || i >= ct.size() || ct[i] != '=')
      return tl::unexpected<std::string>("has a parameter that is not attribute=value");
    ++i;
    const std::size_t value_start = i;
    if (i < ct.size() && ct[i] == '"') {
      for (++i; i < ct.size() && ct[i] != '"'; ++i) {
        if (ct[i] == '\\' && i + 1 < ct.size()) ++i;
        const auto c = static_cast<unsigned char>(ct[i]);
        if (c < 32 || c > 126)
          return tl::unexpected<std::string>("has a quoted parameter value that is not printable ASCII");
      }
      if (i == ct.size()) return tl::unexpected<std::string>("has an unterminated quoted parameter value");
      ++i;
    } else if (token().empty()) {
      return tl::unexpected<std::string>("has a parameter without a value (" + name + "=)");
    }
    if (std::find(names.begin(), names.end(), name) != names.end())
      return tl::unexpected<std::string>("names the parameter " + name + " twice");
    names.push_back(name);
    if (name == "name") continue;
    out += "; ";
    out += name;
    out += '=';
    out += ct.substr(value_start, i - value_start);
  }
  if (iequals(type, "multipart"))
    return tl::unexpected<std::string>("cannot be multipart/*: the gateway builds the message's MIME structure itself");
  const std::string essence = out.substr(0, out.find(';'));
  if (essence == "message/partial" || essence == "message/external-body")
    return tl::unexpected<std::string>("cannot be " + essence + ": it is no attachment (RFC 2046 5.2)");
  return out;
}

// At most `max` bytes of `s` for quoting in an error, cut before a UTF-8 character rather than
// inside one: the answer is JSON, and a cut character would reach the client as U+FFFD.
std::string_view quote_prefix(std::string_view s, std::size_t max) {
  if (s.size() <= max) return s;
  while (max > 0 && (static_cast<unsigned char>(s[max]) & 0xC0) == 0x80) --max;
  return s.substr(0, max);
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "a number";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

tl::unexpected<Error> wrong_type(const std::string& field, const char* expected, const json& got) {
  return fail(ErrorKind::kInvalid, "invalid_type", field + " must be " + expected + ", not " + type_name(got), field);
}

Result<std::vector<Mailbox>> parse_list(const json& root, const char* key, bool required) {
  std::vector<Mailbox> out;
  auto it = root.find(key);
  if (it == root.end() || it->is_null()) {
    if (required) return fail(ErrorKind::kInvalid, "missing_field", std::string(key) + " is required", key);
    return out;
  }
  if (it->is_string()) {  // a lone address is accepted as a one-element list
    auto mb = parse_mailbox(it->get_ref<const std::string&>(), key);
    if (!mb) return tl::unexpected(mb.error());
    out.push_back(std::move(*mb));
    return out;
  }
  if (!it->is_array()) return wrong_type(key, "an array of address strings", *it);
  out.reserve(it->size());
  std::size_t i = 0;
  for (const auto& v : *it) {
    std::string field = std::string(key) + "[" + std::to_string(i++) + "]";
    if (!v.is_string()) return wrong_type(field, "a string", v);
    auto mb = parse_mailbox(v.get_ref<const std::string&>(), field);
    if (!mb) return tl::unexpected(mb.error());
    out.push_back(std::move(*mb));
  }
  return out;
}

Result<std::optional<std::string>> optional_string(const json& root, const char* key) {
  auto it = root.find(key);
  if (it == root.end() || it->is_null()) return std::optional<std::string>{};
  if (!it->is_string()) return wrong_type(key, "a string", *it);
  return std::optional<std::string>{it->get<std::string>()};
}

}  // namespace

bool is_valid_address(std::string_view addr) {
  if (addr.size() > 254 || addr.size() < 3) return false;
  auto at = addr.rfind('@');
  if (at == std::string_view::npos) return false;
  const std::string_view local = addr.substr(0, at);
  const std::string_view domain = addr.substr(at + 1);
  if (!valid_local(local)) return false;
  return has_non_ascii(domain) ? idn_problem(local, domain).empty() : valid_domain(domain);
}

Result<Mailbox> parse_mailbox(std::string_view text, const std::string& field) {
  if (has_control_breaks(text)) return injection(field);
  Mailbox mb;
  std::string_view t = trim(text);
  if (t.empty()) return fail(ErrorKind::kInvalid, "invalid_address", field + " is empty", field);
  if (t.back() == '>') {
    auto lt = t.rfind('<');
    if (lt == std::string_view::npos)
      return fail(ErrorKind::kInvalid, "invalid_address", field + " has '>' without '<'", field);
    std::string_view name = trim(t.substr(0, lt));
    std::string_view addr = trim(t.substr(lt + 1, t.size() - lt - 2));
    if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
      std::string unq;
      for (std::size_t i = 1; i + 1 < name.size(); ++i) {
        if (name[i] == '\\' && i + 2 < name.size()) ++i;
        unq += name[i];
      }
      mb.display_name = std::move(unq);
    } else {
      mb.display_name = std::string(name);
    }
    if (mb.display_name.size() > 256)
      return fail(ErrorKind::kInvalid, "invalid_address", field + " has a display name over 256 bytes", field);
    mb.address = std::string(addr);
  } else {
    mb.address = std::string(t);
  }
  if (!is_valid_address(mb.address)) {
    std::string message = field + " is not a valid email address: '" + std::string(quote_prefix(mb.address, 100)) + "'";
    const std::string_view addr = mb.address;
    if (const auto at = addr.rfind('@'); at != std::string_view::npos && valid_local(addr.substr(0, at))) {
      if (addr.substr(at + 1).starts_with('['))
        message += ": address literals are not supported";
      else if (auto why = idn_problem(addr.substr(0, at), addr.substr(at + 1)); !why.empty())
        message += ": " + why;
    }
    return fail(ErrorKind::kInvalid, "invalid_address", message, field);
  }
  return mb;
}

std::optional<Error> check_custom_header(std::string_view name, std::string_view value, const std::string& field) {
  if (has_control_breaks(name) || has_control_breaks(value))
    return Error{ErrorKind::kInvalid, "header_injection", "CR, LF and NUL characters are not allowed in " + field,
                 field};
  if (name.empty() || name.size() > 76 ||
      !std::all_of(name.begin(), name.end(), [](char c) { return c > 32 && c < 127 && c != ':'; }))
    return Error{ErrorKind::kInvalid, "invalid_header",
                 field + ": '" + std::string(quote_prefix(name, 80)) + "' is not a valid header name", field};
  if (message::is_reserved_header(name))
    return Error{ErrorKind::kInvalid, "reserved_header",
                 field + ": the " + std::string(name) + " header is set by the gateway", field};
  if (value.size() > 900)
    return Error{ErrorKind::kInvalid, "invalid_header", field + " is longer than 900 bytes", field};
  return std::nullopt;
}

Result<nlohmann::json> parse_json_object(std::string_view body) {
  // nlohmann's lexer rejects invalid UTF-8, so every string taken from it is valid UTF-8.
  auto root = parse_strict_json(body);
  if (!root) return root;
  if (!root->is_object()) return fail(ErrorKind::kInvalid, "invalid_json", "the request body must be a JSON object");
  return root;
}

Result<MailRequest> parse_request(std::string_view body, const Limits& limits) {
  auto root = parse_json_object(body);
  if (!root) return tl::unexpected(std::move(root.error()));
  return parse_job(*root, limits);
}

Result<MailRequest> parse_job(const nlohmann::json& root, const Limits& limits) {
  if (!root.is_object()) return fail(ErrorKind::kInvalid, "invalid_json", "a job must be a JSON object");
  MailRequest req;
  auto from_it = root.find("from");
  if (from_it == root.end() || from_it->is_null())
    return fail(ErrorKind::kInvalid, "missing_field", "from is required", "from");
  if (!from_it->is_string()) return wrong_type("from", "a string", *from_it);
  auto from = parse_mailbox(from_it->get_ref<const std::string&>(), "from");
  if (!from) return tl::unexpected(from.error());
  req.from = std::move(*from);

  auto to = parse_list(root, "to", true);
  if (!to) return tl::unexpected(to.error());
  req.to = std::move(*to);
  auto cc = parse_list(root, "cc", false);
  if (!cc) return tl::unexpected(cc.error());
  req.cc = std::move(*cc);
  auto bcc = parse_list(root, "bcc", false);
  if (!bcc) return tl::unexpected(bcc.error());
  req.bcc = std::move(*bcc);
  if (req.to.empty()) return fail(ErrorKind::kInvalid, "missing_field", "to must name at least one recipient", "to");
  std::size_t total = req.to.size() + req.cc.size() + req.bcc.size();
  if (total > static_cast<std::size_t>(limits.max_recipients))
    return fail(ErrorKind::kUnprocessable, "too_many_recipients",
                "a job may have at most " + std::to_string(limits.max_recipients) +
                    " recipients (to+cc+bcc), this one has " + std::to_string(total),
                "to");

  if (auto it = root.find("reply_to"); it != root.end() && !it->is_null()) {
    if (!it->is_string()) return wrong_type("reply_to", "a string", *it);
    auto rt = parse_mailbox(it->get_ref<const std::string&>(), "reply_to");
    if (!rt) return tl::unexpected(rt.error());
    req.reply_to = std::move(*rt);
  }

  auto subject_it = root.find("subject");
  if (subject_it == root.end() || subject_it->is_null())
    return fail(ErrorKind::kInvalid, "missing_field", "subject is required (it may be empty)", "subject");
  if (!subject_it->is_string()) return wrong_type("subject", "a string", *subject_it);
  req.subject = subject_it->get<std::string>();
  if (has_control_breaks(req.subject)) return injection("subject");
  if (req.subject.size() > 2000)
    return fail(ErrorKind::kInvalid, "invalid_subject", "subject is longer than 2000 bytes", "subject");

  auto text = optional_string(root, "body");
  if (!text) return tl::unexpected(text.error());
  req.text = std::move(*text);
  auto html = optional_string(root, "html");
  if (!html) return tl::unexpected(html.error());
  req.html = std::move(*html);
  if (!req.text && !req.html) return fail(ErrorKind::kInvalid, "missing_field", "body or html is required", "body");
  if (req.text && req.text->find('\0') != std::string::npos)
    return fail(ErrorKind::kInvalid, "invalid_body", "body must not contain NUL characters", "body");
  if (req.html && req.html->find('\0') != std::string::npos)
    return fail(ErrorKind::kInvalid, "invalid_body", "html must not contain NUL characters", "html");

  if (auto it = root.find("headers"); it != root.end() && !it->is_null()) {
    if (!it->is_object()) return wrong_type("headers", "an object of strings", *it);
    if (it->size() > 100) return fail(ErrorKind::kInvalid, "invalid_header", "at most 100 custom headers", "headers");
    for (const auto& [name, value] : it->items()) {
      std::string field = "headers." + name;
      if (!value.is_string()) return wrong_type(field, "a string", value);
      const auto& v = value.get_ref<const std::string&>();
      if (auto err = check_custom_header(name, v, field)) return tl::unexpected(*err);
      req.headers.emplace_back(name, v);
    }
  }

  if (auto it = root.find("attachments"); it != root.end() && !it->is_null()) {
    if (!it->is_array()) return wrong_type("attachments", "an array", *it);
    std::size_t i = 0;
    for (const auto& a : *it) {
      std::string field = "attachments[" + std::to_string(i++) + "]";
      if (!a.is_object()) return wrong_type(field, "an object", a);
      Attachment att;
      auto fn = a.find("filename");
      if (fn == a.end() || !fn->is_string() || fn->get_ref<const std::string&>().empty())
        return fail(ErrorKind::kInvalid, "missing_field", field + ".filename must be a non-empty string",
                    field + ".filename");
      att.filename = fn->get<std::string>();
      if (has_control_breaks(att.filename)) return injection(field + ".filename");
      if (att.filename.find_first_of("/\\") != std::string::npos || att.filename.size() > 255)
        return fail(ErrorKind::kInvalid, "invalid_attachment", field + ".filename must be a plain UTF-8 file name",
                    field + ".filename");
      auto ct = a.find("content_type");
      att.content_type = "application/octet-stream";
      if (ct != a.end() && !ct->is_null()) {
        if (!ct->is_string()) return wrong_type(field + ".content_type", "a string", *ct);
        const auto& given = ct->get_ref<const std::string&>();
        if (given.size() > 255)
          return fail(ErrorKind::kInvalid, "invalid_attachment", field + ".content_type is longer than 255 bytes",
                      field + ".content_type");
        auto canonical = canonical_content_type(given);
        if (!canonical)
          return fail(ErrorKind::kInvalid, "invalid_attachment", field + ".content_type " + canonical.error(),
                      field + ".content_type");
        att.content_type = std::move(*canonical);
      }
      auto content = a.find("content");
      if (content == a.end() || !content->is_string())
        return fail(ErrorKind::kInvalid, "missing_field", field + ".content must be a base64 string",
                    field + ".content");
      auto decoded = base64_decode(content->get_ref<const std::string&>());
      if (!decoded)
        return fail(ErrorKind::kInvalid, "invalid_attachment", field + ".content is not valid base64",
                    field + ".content");
      att.content = std::move(*decoded);
      if (message::is_message_rfc822(att.content_type)) {
        if (const std::string problem = message::rfc822_problem(att.content); !problem.empty())
          return fail(ErrorKind::kInvalid, "invalid_attachment",
                      field + ".content cannot be sent as message/rfc822, which may not be base64 (RFC 2046 5.2.1): " +
                          problem + "; send it as application/octet-stream",
                      field + ".content_type");
      }
      if (auto cid = a.find("content_id"); cid != a.end() && !cid->is_null()) {
        const std::string cid_field = field + ".content_id";
        if (!cid->is_string()) return wrong_type(cid_field, "a string", *cid);
        const auto& id = cid->get_ref<const std::string&>();
        if (has_control_breaks(id)) return injection(cid_field);
        if (const std::string problem = content_id_problem(id); !problem.empty())
          return fail(ErrorKind::kInvalid, "invalid_attachment", cid_field + " " + problem, cid_field);
        // An inline part lives in multipart/related next to the html that shows it; without
        // html nothing shows it, and turning it silently into a regular attachment would not
        // be what the client asked for.
        if (!req.html)
          return fail(ErrorKind::kInvalid, "invalid_attachment",
                      cid_field + " makes the attachment an inline part of the html (cid:" + id +
                          "), but this job has no html; drop content_id to send it as a regular attachment",
                      cid_field);
        // Mail clients differ in whether they compare Content-IDs case-sensitively, so two ids
        // that differ only in case would be ambiguous.
        for (std::size_t k = 0; k < req.attachments.size(); ++k) {
          if (!req.attachments[k].content_id.empty() && iequals(req.attachments[k].content_id, id))
            return fail(ErrorKind::kInvalid, "invalid_attachment",
                        cid_field + " \"" + id + "\" is already the content_id of attachments[" + std::to_string(k) +
                            "]; each inline part needs its own",
                        cid_field);
        }
        att.content_id = id;
      }
      req.attachments.push_back(std::move(att));
    }
  }

  // Webhooks: the URL's form only (pure); where it points is checked at submit.
  if (auto it = root.find("callback_url"); it != root.end() && !it->is_null()) {
    if (!it->is_string()) return wrong_type("callback_url", "a string", *it);
    const auto& url = it->get_ref<const std::string&>();
    if (auto parsed = webhook::parse_callback_url(url, "callback_url"); !parsed)
      return tl::unexpected(std::move(parsed.error()));
    req.callback_url = url;
  }
  return req;
}

}  // namespace websmtp::job
