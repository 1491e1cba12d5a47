// SPF check_host() (RFC 7208 4). The record is parsed whole before anything is evaluated
// (4.6: a syntax error anywhere is a permerror, whatever comes first), then its mechanisms
// are tried left to right; include and redirect recurse, sharing the lookup counters.
#include "websmtp/dns/spf.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>

#include "websmtp/common/text.hpp"

namespace websmtp::dns {

namespace {

using smtp::DnsAnswer;
using smtp::DnsStatus;
using smtp::DnsType;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

struct Ip {
  int family = 0;  // AF_INET, AF_INET6
  std::array<unsigned char, 16> bytes{};
};

std::optional<Ip> parse_ip(const std::string& text) {
  Ip ip;
  if (inet_pton(AF_INET, text.c_str(), ip.bytes.data()) == 1) {
    ip.family = AF_INET;
    return ip;
  }
  if (inet_pton(AF_INET6, text.c_str(), ip.bytes.data()) == 1) {
    ip.family = AF_INET6;
    return ip;
  }
  return std::nullopt;
}

bool in_network(const Ip& ip, const Ip& net, int prefix) {
  if (ip.family != net.family) return false;
  for (int bit = 0; bit < prefix; bit += 8) {
    int take = std::min(8, prefix - bit);
    unsigned mask = (0xFFu << (8 - take)) & 0xFFu;
    if ((ip.bytes[bit / 8] & mask) != (net.bytes[bit / 8] & mask)) return false;
  }
  return true;
}

std::optional<int> parse_length(std::string_view s, int max) {
  int v = 0;
  if (s.empty() || s.size() > 3 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 0 || v > max) return std::nullopt;
  return v;
}

// One term of a record, parsed.
struct Term {
  char qualifier = '+';
  std::string name;         // mechanism or modifier name, lower case
  std::string domain_spec;  // the macro-string after ':' or '=' (may be empty)
  bool modifier = false;
  std::optional<Ip> network;  // ip4 / ip6
  int cidr4 = 32;
  int cidr6 = 128;
  std::string text;  // as written
};

bool is_name_char(char c, bool first) {
  bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  if (first) return alpha;
  return alpha || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

// "/24", "//64", "/24//64" after a or mx.
bool parse_dual_cidr(std::string_view s, Term& t) {
  if (s.empty()) return true;
  if (s.rfind("//", 0) == 0) {
    auto v6 = parse_length(s.substr(2), 128);
    if (!v6) return false;
    t.cidr6 = *v6;
    return true;
  }
  if (s[0] != '/') return false;
  s.remove_prefix(1);
  auto dd = s.find("//");
  auto v4 = parse_length(s.substr(0, dd), 32);
  if (!v4) return false;
  t.cidr4 = *v4;
  if (dd == std::string_view::npos) return true;
  auto v6 = parse_length(s.substr(dd + 2), 128);
  if (!v6) return false;
  t.cidr6 = *v6;
  return true;
}

// Parses one term; an error message when it is malformed.
std::optional<std::string> parse_term(std::string_view text, Term& t) {
  t.text = std::string(text);
  std::string_view s = text;
  bool explicit_qualifier = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-' || s[0] == '~' || s[0] == '?')) {
    t.qualifier = s[0];
    explicit_qualifier = true;
    s.remove_prefix(1);
  }
  std::size_t n = 0;
  while (n < s.size() && is_name_char(s[n], n == 0)) ++n;
  if (n == 0) return "'" + t.text + "' is not a mechanism or modifier";
  t.name = lower(s.substr(0, n));
  std::string_view rest = s.substr(n);
  if (!rest.empty() && rest[0] == '=' && !explicit_qualifier) {
    t.modifier = true;
    t.domain_spec = std::string(rest.substr(1));
    return std::nullopt;
  }
  auto bad = [&] { return std::optional<std::string>("'" + t.text + "' is malformed"); };
  const std::string& m = t.name;
  if (m == "all") {
    if (!rest.empty()) return bad();
  } else if (m == "include" || m == "exists") {
    if (rest.size() < 2 || rest[0] != ':') return bad();
    t.domain_spec = std::string(rest.substr(1));
    if (t.domain_spec.find('/') != std::string::npos) return bad();
  } else if (m == "a" || m == "mx" || m == "ptr") {
    std::string_view spec, cidr;
    if (!rest.empty() && rest[0] == ':') {
      rest.remove_prefix(1);
      auto slash = rest.find('/');
      spec = rest.substr(0, slash);
      if (spec.empty()) return bad();
      cidr = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    } else {
      cidr = rest;
    }
    t.domain_spec = std::string(spec);
    if (m == "ptr" ? !cidr.empty() : !parse_dual_cidr(cidr, t)) return bad();
  } else if (m == "ip4" || m == "ip6") {
    if (rest.size() < 2 || rest[0] != ':') return bad();
    rest.remove_prefix(1);
    auto slash = rest.find('/');
    auto ip = parse_ip(std::string(rest.substr(0, slash)));
    int family = m == "ip4" ? AF_INET : AF_INET6;
    if (!ip || ip->family != family) return bad();
    t.network = ip;
    int max = family == AF_INET ? 32 : 128;
    int len = max;
    if (slash != std::string_view::npos) {
      auto l = parse_length(rest.substr(slash + 1), max);
      if (!l) return bad();
      len = *l;
    }
    (family == AF_INET ? t.cidr4 : t.cidr6) = len;
  } else {
    return "unknown mechanism '" + t.text + "'";
  }
  return std::nullopt;
}

SpfResult qualifier_result(char q) {
  switch (q) {
    case '-':
      return SpfResult::kFail;
    case '~':
      return SpfResult::kSoftFail;
    case '?':
      return SpfResult::kNeutral;
    default:
      return SpfResult::kPass;
  }
}

bool valid_domain(std::string_view d) {
  // A multi-label name; the last label not all digits (RFC 7208 4.3, 7.1's toplabel).
  if (!is_dns_name(d) || d.find('.') == std::string_view::npos) return false;
  std::string_view top = d.substr(d.rfind('.') + 1);
  return !std::all_of(top.begin(), top.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A name to look up after macro expansion: labels of 1 to 63 bytes, 253 in all. Macros may
// put any visible character in a label (%{s} holds the sender's '+' and '@'); DNS allows it.
bool is_lookup_name(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::size_t label = 0;
  for (char c : s) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
    } else if (c < 0x21 || c > 0x7e || c == '\\' || ++label > 63) {
      return false;
    }
  }
  return label > 0;
}

struct Outcome {
  SpfResult result = SpfResult::kNeutral;
  std::string matched;
  std::string detail;
};

class Evaluator {
 public:
  Evaluator(smtp::DnsClient& dns, const SpfRequest& request, Ip ip, SpfCheck& out)
      : dns_(dns), request_(request), ip_(ip), out_(out) {
    sender_ = request.sender.empty() ? "postmaster@" + request.domain : request.sender;
    auto at = sender_.rfind('@');
    local_ = at == std::string::npos || at == 0 ? "postmaster" : sender_.substr(0, at);
    sender_domain_ = at == std::string::npos ? request.domain : sender_.substr(at + 1);
  }

  Outcome check_host(const std::string& domain, int depth) {
    if (!valid_domain(domain)) return {SpfResult::kNone, "", "'" + domain + "' is not a domain name"};
    DnsAnswer a = dns_.query(domain, DnsType::kTxt);
    if (a.status == DnsStatus::kTempFail || a.status == DnsStatus::kError)
      return {SpfResult::kTempError, "", "TXT lookup of " + domain + " failed: " + a.detail};
    if (a.status == DnsStatus::kNxDomain) return {SpfResult::kNone, "", domain + " does not exist (NXDOMAIN)"};
    auto records = spf_records(a.txt);
    if (records.empty()) return {SpfResult::kNone, "", domain + " has no v=spf1 TXT record"};
    if (depth == 0) out_.record = records.front();
    if (records.size() > 1)
      return {SpfResult::kPermError, "",
              domain + " has " + std::to_string(records.size()) + " v=spf1 records; there must be exactly one"};
    return evaluate(domain, records.front(), depth);
  }

 private:
  Outcome evaluate(const std::string& domain, const std::string& record, int depth) {
    std::vector<Term> terms;
    const Term* redirect = nullptr;
    const Term* exp = nullptr;
    std::size_t i = 6;  // after "v=spf1"
    while (i < record.size()) {
      while (i < record.size() && record[i] == ' ') ++i;
      std::size_t end = record.find(' ', i);
      if (end == std::string::npos) end = record.size();
      if (end > i) {
        Term t;
        if (auto e = parse_term(std::string_view(record).substr(i, end - i), t))
          return {SpfResult::kPermError, "", "in the record of " + domain + ": " + *e};
        terms.push_back(std::move(t));
      }
      i = end;
    }
    for (const Term& t : terms) {
      if (!t.modifier) continue;
      if (t.name == "redirect" || t.name == "exp") {
        const Term*& slot = t.name == "redirect" ? redirect : exp;
        if (slot) return {SpfResult::kPermError, "", "the record of " + domain + " has two " + t.name + "= modifiers"};
        slot = &t;
      }
    }
    if (exp) {  // checked for syntax only: no explanation is fetched
      std::string ignored;
      if (auto e = expand(exp->domain_spec, domain, ignored))
        return {SpfResult::kPermError, "", "in the record of " + domain + ": " + *e};
    }
    for (const Term& t : terms) {
      if (t.modifier) continue;
      bool match = false;
      if (auto stop = mechanism(t, domain, depth, match)) return *stop;
      if (match) return {qualifier_result(t.qualifier), t.text, "matched " + t.text + " in the record of " + domain};
    }
    if (redirect) {  // only when no mechanism matched (RFC 7208 6.1); an "all" makes it moot
      std::string target;
      if (auto stop = count_lookup()) return *stop;
      if (auto e = expand(redirect->domain_spec, domain, target))
        return {SpfResult::kPermError, "", "in the record of " + domain + ": " + *e};
      Outcome o = check_host(target, depth + 1);
      if (o.result == SpfResult::kNone)
        return {SpfResult::kPermError, "", "redirect=" + target + " of " + domain + ": " + o.detail};
      return o;
    }
    return {SpfResult::kNeutral, "", "no mechanism of " + domain + "'s record matched (default neutral)"};
  }

  std::optional<Outcome> count_lookup() {
    if (++out_.dns_lookups > kSpfMaxDnsLookups)
      return Outcome{SpfResult::kPermError, "",
                     "more than " + std::to_string(kSpfMaxDnsLookups) +
                         " DNS lookups (include, a, mx, ptr, exists, redirect; RFC 7208 4.6.4)"};
    return std::nullopt;
  }

  std::optional<Outcome> count_void(const DnsAnswer& a) {
    if (a.status == DnsStatus::kNxDomain || (a.status == DnsStatus::kOk && smtp::empty_answer(a))) {
      if (++out_.void_lookups > kSpfMaxVoidLookups)
        return Outcome{SpfResult::kPermError, "",
                       "more than " + std::to_string(kSpfMaxVoidLookups) +
                           " DNS lookups found nothing (void lookups, RFC 7208 4.6.4)"};
    }
    return std::nullopt;
  }

  static std::optional<Outcome> dns_failed(const DnsAnswer& a, const std::string& what) {
    if (a.status == DnsStatus::kTempFail || a.status == DnsStatus::kError)
      return Outcome{SpfResult::kTempError, "", what + ": " + a.detail};
    return std::nullopt;
  }

  // Whether one of `host`'s addresses (of the client's family) is in the mechanism's network.
  std::optional<Outcome> address_match(const std::string& host, const Term& t, bool count_voids, bool& match) {
    DnsType type = ip_.family == AF_INET ? DnsType::kA : DnsType::kAaaa;
    DnsAnswer a = dns_.query(host, type);
    if (auto e = dns_failed(a, t.text + ": address lookup of " + host)) return e;
    if (count_voids)
      if (auto e = count_void(a)) return e;
    int len = ip_.family == AF_INET ? t.cidr4 : t.cidr6;
    for (const auto& text : a.addresses) {
      auto addr = parse_ip(text);
      if (addr && in_network(ip_, *addr, len)) {
        match = true;
        break;
      }
    }
    return std::nullopt;
  }

  // Evaluates one mechanism: sets `match`, or returns the result that ends the check.
  std::optional<Outcome> mechanism(const Term& t, const std::string& domain, int depth, bool& match) {
    const std::string& m = t.name;
    if (m == "all") {
      match = true;
      return std::nullopt;
    }
    if (m == "ip4" || m == "ip6") {
      match = in_network(ip_, *t.network, t.network->family == AF_INET ? t.cidr4 : t.cidr6);
      return std::nullopt;
    }
    if (auto stop = count_lookup()) return stop;
    std::string target = domain;
    if (!t.domain_spec.empty())
      if (auto e = expand(t.domain_spec, domain, target))
        return Outcome{SpfResult::kPermError, "", "in the record of " + domain + ": " + *e};
    if (m == "include") {
      Outcome o = check_host(target, depth + 1);
      switch (o.result) {
        case SpfResult::kPass:
          match = true;
          return std::nullopt;
        case SpfResult::kFail:
        case SpfResult::kSoftFail:
        case SpfResult::kNeutral:
          return std::nullopt;
        case SpfResult::kTempError:
        case SpfResult::kPermError:
          return o;
        case SpfResult::kNone:
          return Outcome{SpfResult::kPermError, "", "include:" + target + ": " + o.detail};
      }
    }
    if (m == "a") return address_match(target, t, true, match);
    if (m == "mx") {
      DnsAnswer a = dns_.query(target, DnsType::kMx);
      if (auto e = dns_failed(a, t.text + ": MX lookup of " + target)) return e;
      if (auto e = count_void(a)) return e;
      if (a.mx.size() > static_cast<std::size_t>(kSpfMaxMxNames))
        return Outcome{SpfResult::kPermError, "",
                       t.text + ": " + target + " has more than " + std::to_string(kSpfMaxMxNames) + " MX hosts"};
      for (const auto& r : a.mx) {
        if (r.exchange.empty()) continue;  // a null MX has no address
        if (auto e = address_match(r.exchange, t, false, match)) return e;
        if (match) break;
      }
      return std::nullopt;
    }
    if (m == "exists") {
      DnsAnswer a = dns_.query(target, DnsType::kA);
      if (auto e = dns_failed(a, t.text + ": A lookup of " + target)) return e;
      if (auto e = count_void(a)) return e;
      match = !a.addresses.empty();
      return std::nullopt;
    }
    // ptr: counted, never matched (RFC 7208 5.5: "do not use"); reverse lookups of the
    // gateway's own address would say nothing about what a receiver decides.
    return std::nullopt;
  }

  // Macro expansion (RFC 7208 7) of a domain-spec in `domain`'s record; an error message for a
  // malformed macro or a result that is not a domain name.
  std::optional<std::string> expand(const std::string& spec, const std::string& domain, std::string& out) {
    out.clear();
    for (std::size_t i = 0; i < spec.size(); ++i) {
      char c = spec[i];
      if (c != '%') {
        if (c < 0x21 || c > 0x7e) return "'" + spec + "' has a character not allowed in a domain-spec";
        out += c;
        continue;
      }
      if (++i >= spec.size()) return "'" + spec + "' ends with a lone %";
      c = spec[i];
      if (c == '%') {
        out += '%';
        continue;
      }
      if (c == '_') {
        out += ' ';
        continue;
      }
      if (c == '-') {
        out += "%20";
        continue;
      }
      if (c != '{') return "'" + spec + "' has an unknown % escape";
      auto close = spec.find('}', i);
      if (close == std::string::npos || close == i + 1) return "'" + spec + "' has an unterminated macro";
      std::string_view macro = std::string_view(spec).substr(i + 1, close - i - 1);
      i = close;
      char letter = ascii_lower(macro[0]);
      bool url_escape = macro[0] >= 'A' && macro[0] <= 'Z';
      std::string value;
      switch (letter) {
        case 's':
          value = sender_;
          break;
        case 'l':
          value = local_;
          break;
        case 'o':
          value = sender_domain_;
          break;
        case 'd':
          value = domain;
          break;
        case 'i':
          value = dotted_ip();
          break;
        case 'p':
          value = "unknown";  // validated reverse names are not looked up (see ptr)
          break;
        case 'v':
          value = ip_.family == AF_INET ? "in-addr" : "ip6";
          break;
        case 'h':
          value = request_.helo.empty() ? "unknown" : request_.helo;
          break;
        default:
          return "'" + spec + "' uses an unknown macro letter";
      }
      std::size_t j = 1;
      std::size_t digits_start = j;
      while (j < macro.size() && macro[j] >= '0' && macro[j] <= '9') ++j;
      int keep = 0;
      if (j > digits_start) {
        auto n = parse_length(macro.substr(digits_start, j - digits_start), 128);
        if (!n || *n == 0) return "'" + spec + "' has a bad macro transformer";
        keep = *n;
      }
      bool reverse = false;
      if (j < macro.size() && ascii_lower(macro[j]) == 'r') {
        reverse = true;
        ++j;
      }
      std::string delimiters(macro.substr(j));
      if (delimiters.find_first_not_of(".-+,/_=") != std::string::npos)
        return "'" + spec + "' has a bad macro delimiter";
      if (delimiters.empty()) delimiters = ".";
      std::vector<std::string> parts;
      std::string part;
      for (char ch : value) {
        if (delimiters.find(ch) != std::string::npos) {
          parts.push_back(part);
          part.clear();
        } else {
          part += ch;
        }
      }
      parts.push_back(part);
      if (reverse) std::reverse(parts.begin(), parts.end());
      if (keep > 0 && static_cast<std::size_t>(keep) < parts.size()) parts.erase(parts.begin(), parts.end() - keep);
      std::string joined;
      for (std::size_t k = 0; k < parts.size(); ++k) {
        if (k) joined += '.';
        joined += parts[k];
      }
      if (url_escape) {
        std::string escaped;
        for (unsigned char ch : joined) {
          bool unreserved = std::isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~';
          if (unreserved) {
            escaped += static_cast<char>(ch);
          } else {
            static const char* hex = "0123456789ABCDEF";
            escaped += '%';
            escaped += hex[ch >> 4];
            escaped += hex[ch & 15];
          }
        }
        joined = escaped;
      }
      out += joined;
    }
    while (!out.empty() && out.back() == '.') out.pop_back();
    // Over 253 bytes: left-hand labels go until it fits (RFC 7208 4.8).
    while (out.size() > 253 && out.find('.') != std::string::npos) out.erase(0, out.find('.') + 1);
    if (!is_lookup_name(out)) return "'" + spec + "' does not give a domain name ('" + out + "')";
    return std::nullopt;
  }

  // %{i}: dotted quad, or the 32 nibbles of an IPv6 address separated by dots.
  std::string dotted_ip() const {
    char text[INET6_ADDRSTRLEN];
    if (ip_.family == AF_INET) return inet_ntop(AF_INET, ip_.bytes.data(), text, sizeof text);
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (unsigned char b : ip_.bytes) {
      if (!out.empty()) out += '.';
      out += hex[b >> 4];
      out += '.';
      out += hex[b & 15];
    }
    return out;
  }

  smtp::DnsClient& dns_;
  const SpfRequest& request_;
  Ip ip_;
  SpfCheck& out_;
  std::string sender_, local_, sender_domain_;
};

}  // namespace

const char* to_string(SpfResult r) {
  switch (r) {
    case SpfResult::kNone:
      return "none";
    case SpfResult::kNeutral:
      return "neutral";
    case SpfResult::kPass:
      return "pass";
    case SpfResult::kFail:
      return "fail";
    case SpfResult::kSoftFail:
      return "softfail";
    case SpfResult::kTempError:
      return "temperror";
    case SpfResult::kPermError:
      return "permerror";
  }
  return "?";
}

std::vector<std::string> spf_records(const std::vector<std::string>& txt) {
  std::vector<std::string> out;
  for (const auto& t : txt)
    if (istarts_with(t, "v=spf1") && (t.size() == 6 || t[6] == ' ')) out.push_back(t);
  return out;
}

SpfCheck check_spf(smtp::DnsClient& dns, const SpfRequest& request) {
  SpfCheck out;
  auto ip = parse_ip(request.ip);
  if (!ip) {
    out.result = SpfResult::kNone;
    out.detail = "'" + request.ip + "' is not an IP address";
    return out;
  }
  Evaluator e(dns, request, *ip, out);
  Outcome o = e.check_host(lower(request.domain), 0);
  out.result = o.result;
  out.matched = o.matched;
  out.detail = o.detail;
  return out;
}

}  // namespace websmtp::dns
