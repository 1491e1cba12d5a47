#include "websmtp/dns/domain_check.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <random>

#include "websmtp/common/base64.hpp"
#include "websmtp/common/text.hpp"
#include "websmtp/dns/spf.hpp"

namespace websmtp::dns {

namespace {

using nlohmann::json;
using smtp::DnsAnswer;
using smtp::DnsStatus;
using smtp::DnsType;

std::string trim(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return std::string(s);
}

std::string without_whitespace(std::string_view s) {
  std::string out;
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n') out += c;
  return out;
}

// out += sep + piece, the separator only between pieces.
void append_joined(std::string& out, std::string_view sep, std::string_view piece) {
  if (!out.empty()) out += sep;
  out += piece;
}

bool temporary(const DnsAnswer& a) { return a.status == DnsStatus::kTempFail || a.status == DnsStatus::kError; }

// A zone-file line; a value over 255 bytes as several quoted strings, as `dkim keygen` prints it.
std::string quoted_txt(const std::string& name, const std::string& value) {
  std::string out = name + ". TXT";
  for (const auto& piece : txt_strings(value)) out += " \"" + piece + "\"";
  return out;
}

bool is_private_ip(const std::string& ip) {
  in_addr v4{};
  if (inet_pton(AF_INET, ip.c_str(), &v4) == 1) {
    std::uint32_t a = ntohl(v4.s_addr);
    return (a >> 24) == 10 || (a >> 24) == 127 || (a >> 20) == (172 << 4 | 1) || (a >> 16) == (192 << 8 | 168) ||
           (a >> 16) == (169 << 8 | 254) || (a >> 22) == (100 << 2 | 1);  // 100.64/10 (carrier NAT)
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, ip.c_str(), &v6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&v6) || IN6_IS_ADDR_LINKLOCAL(&v6) || (v6.s6_addr[0] & 0xFE) == 0xFC;
  return false;
}

// ---- SPF ----------------------------------------------------------------------------------

json spf_part(smtp::DnsClient& dns, const std::string& domain, const DomainCheckOptions& o, SpfResult& result) {
  json j;
  DnsAnswer txt = dns.query(domain, DnsType::kTxt);
  auto records = spf_records(txt.txt);
  std::string mechanism = o.outbound_ip.find(':') == std::string::npos ? "ip4:" : "ip6:";
  std::string own = o.outbound_ip.empty() ? "ip4:<your outbound address>" : mechanism + o.outbound_ip;
  j["name"] = domain;
  j["found"] = !records.empty();
  j["value"] = records.empty() ? json(nullptr) : records.size() == 1 ? json(records.front()) : json(records);
  if (temporary(txt)) {
    result = SpfResult::kTempError;
    j["found"] = false;
    j["valid"] = false;
    j["result"] = "temperror";
    j["details"] = "TXT lookup of " + domain + " failed: " + txt.detail;
    j["publish"] = nullptr;
    return j;
  }
  // Without a known address the record is still checked for syntax and the lookup limit,
  // evaluated for an address no record lists (TEST-NET-1).
  SpfRequest request{o.outbound_ip.empty() ? "192.0.2.1" : o.outbound_ip, domain, "", o.helo};
  SpfCheck check = check_spf(dns, request);
  result = o.outbound_ip.empty() ? SpfResult::kNone : check.result;
  bool valid = !records.empty() && check.result != SpfResult::kPermError && check.result != SpfResult::kTempError;
  j["valid"] = valid;
  j["result"] = o.outbound_ip.empty() ? "unknown" : to_string(check.result);
  j["lookups"] = check.dns_lookups;
  if (!check.matched.empty()) j["matched"] = check.matched;
  std::string details = check.detail;
  if (!o.outbound_ip.empty() && check.result != SpfResult::kPass && valid)
    details = o.outbound_ip + " is not allowed to send for " + domain + ": " + details;
  if (o.outbound_ip.empty())
    details = "the outbound address is unknown (no route; set OUTBOUND_IP): " + details;
  else if (o.outbound_ip_source != "OUTBOUND_IP" && is_private_ip(o.outbound_ip))  // set as the operator means it
    details += "; note: " + o.outbound_ip +
               " is a private address: behind NAT receivers see another one, set OUTBOUND_IP to it";
  j["details"] = details;

  std::string publish;
  if (records.empty()) {
    publish = quoted_txt(domain, "v=spf1 " + own + " -all");
  } else if (records.size() > 1) {
    publish = "one record only: merge the " + std::to_string(records.size()) + " v=spf1 records into one, e.g. " +
              quoted_txt(domain, "v=spf1 " + own + " -all");
  } else if (check.result == SpfResult::kPermError && check.dns_lookups > kSpfMaxDnsLookups) {
    publish = "a record needing at most 10 DNS lookups: replace include:/a/mx terms by ip4:/ip6: ranges, e.g. " +
              quoted_txt(domain, "v=spf1 " + own + " -all");
  } else if (check.result == SpfResult::kPermError) {
    publish = "a record without errors, e.g. " + quoted_txt(domain, "v=spf1 " + own + " -all");
  } else if ((check.result == SpfResult::kFail || check.result == SpfResult::kSoftFail ||
              check.result == SpfResult::kNeutral) &&
             !o.outbound_ip.empty()) {
    std::string rest = trim(std::string_view(records.front()).substr(6));
    publish = quoted_txt(domain, "v=spf1 " + own + (rest.empty() ? " -all" : " " + rest));
  }
  j["publish"] = publish.empty() ? json(nullptr) : json(publish);
  return j;
}

// ---- DKIM ---------------------------------------------------------------------------------

json dkim_selector(smtp::DnsClient& dns, const std::string& domain, const HeldDkimKey& key, bool& ok) {
  std::string name = key.selector + "._domainkey." + domain;
  json j{{"selector", key.selector}, {"name", name}};
  DnsAnswer a = dns.query(name, DnsType::kTxt);
  auto fail = [&](bool found, const std::string& details) {
    ok = false;
    j["found"] = found;
    j["valid"] = false;
    j["matches"] = false;
    j["details"] = details;
    j["publish"] = quoted_txt(name, key.dns_record);
    return j;
  };
  if (temporary(a)) {
    j["value"] = nullptr;
    return fail(false, "TXT lookup of " + name + " failed: " + a.detail);
  }
  if (a.txt.empty()) {
    j["value"] = nullptr;
    return fail(false, "no TXT record at " + name + ": receivers cannot verify the signatures");
  }
  j["value"] = a.txt.size() == 1 ? json(a.txt.front()) : json(a.txt);
  if (a.txt.size() > 1)
    return fail(true, std::to_string(a.txt.size()) + " TXT records at " + name + "; there must be exactly one");
  auto tags = parse_tag_list(a.txt.front());
  if (!tags) return fail(true, "the record is not a tag=value list");
  std::string v, k = "rsa", p;
  bool has_p = false;
  for (std::size_t i = 0; i < tags->size(); ++i) {
    const auto& [tag, value] = (*tags)[i];
    if (tag == "v") {
      if (i != 0) return fail(true, "v= must be the first tag");
      v = value;
    } else if (tag == "k") {
      k = value;
    } else if (tag == "p") {
      p = without_whitespace(value);
      has_p = true;
    }
  }
  if (!v.empty() && v != "DKIM1") return fail(true, "v=" + v + " is not v=DKIM1");
  if (!has_p) return fail(true, "the record has no p= (public key)");
  if (p.empty()) return fail(true, "p= is empty: the key is revoked");
  auto published = base64_decode(p);
  if (!published || published->empty()) return fail(true, "p= is not base64");
  if (k != "rsa" && k != "ed25519") return fail(true, "k=" + k + " is not a known key type");
  j["found"] = true;
  j["valid"] = true;
  auto held = base64_decode(key.public_key_base64);
  bool matches = k == key.algorithm && held && *held == *published;
  j["matches"] = matches;
  if (!matches) {
    ok = false;
    j["details"] = k != key.algorithm ? "k=" + k + " but the key held is " + key.algorithm
                                      : "p= is another public key than the one websmtpd signs with: signatures fail";
    j["publish"] = quoted_txt(name, key.dns_record);
  } else {
    j["details"] = "the published key is the one websmtpd signs with";
    j["publish"] = nullptr;
  }
  return j;
}

json dkim_part(smtp::DnsClient& dns, const std::string& domain, const DomainCheckOptions& o, bool& ok, bool& signs) {
  json j;
  json selectors = json::array();
  ok = true;
  signs = false;
  for (const auto& key : o.dkim_keys) {
    bool one_ok = true;
    selectors.push_back(dkim_selector(dns, domain, key, one_ok));
    ok = ok && one_ok;
    signs = signs || one_ok;
  }
  j["configured"] = !o.dkim_keys.empty();
  j["selectors"] = selectors;
  if (o.dkim_keys.empty()) {
    j["found"] = false;
    j["valid"] = false;
    j["value"] = nullptr;
    j["details"] = "no DKIM key is configured for " + domain + ": mail from it is sent unsigned";
    j["publish"] = "a key: websmtpctl dkim keygen --domain " + domain +
                   " --selector <selector> --dir <DKIM_KEYS_DIR>, restart websmtpd, publish the TXT record it prints";
    return j;
  }
  bool all_found = true, all_valid = true;
  std::string details, publish;
  for (const auto& s : selectors) {
    all_found = all_found && s["found"].get<bool>();
    all_valid = all_valid && s["valid"].get<bool>();
    append_joined(details, "; ", s["selector"].get<std::string>() + ": " + s["details"].get<std::string>());
    if (s["publish"].is_string()) append_joined(publish, "\n", s["publish"].get<std::string>());
  }
  j["found"] = all_found;
  j["valid"] = all_valid && ok;
  j["value"] = selectors.size() == 1 ? selectors[0]["value"] : json(nullptr);
  j["details"] = details;
  j["publish"] = publish.empty() ? json(nullptr) : json(publish);
  return j;
}

// ---- DMARC --------------------------------------------------------------------------------

json dmarc_part(smtp::DnsClient& dns, const std::string& domain, bool aligned_pass, bool& ok) {
  const std::string own = "_dmarc." + domain;
  std::string suggestion = quoted_txt(own, "v=DMARC1; p=none; rua=mailto:postmaster@" + domain);
  ok = false;
  // Without a record of its own a domain falls under its organizational domain's (RFC 7489
  // 6.6.3). Without a public suffix list, walk up the tree as DMARCbis does, stopping above
  // the top-level domain; a record found there applies its sp= (else p=) to the subdomain.
  std::string name = own;
  std::string at = domain;
  DnsAnswer a;
  std::vector<std::string> records;
  for (int step = 0; step < 8; ++step) {
    name = "_dmarc." + at;
    a = dns.query(name, DnsType::kTxt);
    for (const auto& t : a.txt)
      if (istarts_with(trim(t), "v=DMARC1")) records.push_back(t);
    std::string parent = at.substr(at.find('.') + 1);
    if (temporary(a) || !records.empty() || parent.find('.') == std::string::npos) break;
    at = parent;
  }
  const bool inherited = !records.empty() && at != domain;
  if (records.empty()) name = own;
  json j{{"name", name}, {"inherited", inherited}};
  auto fail = [&](bool found, const std::string& details) {
    j["found"] = found;
    j["valid"] = false;
    j["policy"] = nullptr;
    j["details"] = details;
    j["publish"] = suggestion;
    return j;
  };
  j["value"] = records.empty() ? json(nullptr) : records.size() == 1 ? json(records.front()) : json(records);
  if (temporary(a)) return fail(false, "TXT lookup of " + name + " failed: " + a.detail);
  if (records.empty())
    return fail(false, "no v=DMARC1 record at " + name +
                           (domain.find('.') != domain.rfind('.') ? " nor its parents" : "") +
                           ": large receivers refuse or junk bulk mail from domains without DMARC");
  if (records.size() > 1)
    return fail(true, std::to_string(records.size()) + " v=DMARC1 records at " + name + "; there must be one");
  auto tags = parse_tag_list(records.front());
  if (!tags || tags->empty() || (*tags)[0].first != "v" || (*tags)[0].second != "DMARC1")
    return fail(true, "the record must be a tag=value list starting with v=DMARC1");
  std::string policy, subdomain_policy;
  for (const auto& [tag, value] : *tags) {
    if (tag == "p" || tag == "sp") {
      if (value != "none" && value != "quarantine" && value != "reject")
        return fail(true, tag + "=" + value + " is not none, quarantine or reject");
      (tag == "p" ? policy : subdomain_policy) = value;
    } else if ((tag == "adkim" || tag == "aspf") && value != "r" && value != "s") {
      return fail(true, tag + "=" + value + " is not r or s");
    } else if (tag == "pct") {
      bool digits = !value.empty() && value.size() <= 3 &&
                    std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; });
      if (!digits || std::stoi(value) > 100) return fail(true, "pct=" + value + " is not 0..100");
    }
  }
  if (policy.empty()) return fail(true, "the record has no p= (none, quarantine or reject)");
  if (inherited && !subdomain_policy.empty()) policy = subdomain_policy;
  j["found"] = true;
  j["valid"] = true;
  j["policy"] = policy;
  // websmtpd sends with the From address as MAIL FROM, so an SPF pass for the domain is aligned.
  j["result"] = aligned_pass ? "pass" : "fail";
  ok = aligned_pass || policy == "none";
  j["details"] = aligned_pass       ? "p=" + policy + "; SPF or DKIM passes aligned with " + domain
                 : policy == "none" ? "p=none: neither SPF nor DKIM passes aligned, receivers are only asked to report"
                                    : "p=" + policy + " but neither SPF nor DKIM passes aligned: receivers will " +
                                          policy + " the mail";
  j["publish"] = nullptr;
  return j;
}

// ---- MX -----------------------------------------------------------------------------------

json mx_part(smtp::DnsClient& dns, const std::string& domain, bool& ok) {
  json j{{"name", domain}};
  std::string suggestion = domain + ". MX 10 <a host that accepts mail for " + domain + ", bounces included>";
  ok = false;
  DnsAnswer a = dns.query(domain, DnsType::kMx);
  std::mt19937_64 rng(0);  // the report lists equal preferences in a stable order
  smtp::MxRoute route = smtp::route_from_mx_answer(domain, a, rng);
  json hosts = json::array();
  std::sort(a.mx.begin(), a.mx.end(), [](const smtp::MxRecord& x, const smtp::MxRecord& y) {
    return x.preference != y.preference ? x.preference < y.preference : x.exchange < y.exchange;
  });
  std::string value;
  for (const auto& r : a.mx) {
    hosts.push_back({{"preference", r.preference}, {"exchange", r.exchange}});
    append_joined(value, ", ", std::to_string(r.preference) + " " + (r.exchange.empty() ? "." : r.exchange));
  }
  j["hosts"] = hosts;
  j["value"] = value.empty() ? json(nullptr) : json(value);
  j["found"] = !a.mx.empty();
  j["publish"] = nullptr;
  switch (route.kind) {
    case smtp::MxRoute::Kind::kTempFail:
      j["valid"] = false;
      j["details"] = route.detail;
      return j;
    case smtp::MxRoute::Kind::kNoDomain:
      j["valid"] = false;
      j["details"] = route.detail + ": receivers refuse mail from a domain that does not exist";
      j["publish"] = suggestion;
      return j;
    case smtp::MxRoute::Kind::kNullMx:
      j["valid"] = false;
      j["details"] = route.detail + ": bounces cannot come back, and receivers refuse such senders";
      j["publish"] = "remove the null MX (" + domain + ". MX 0 .) and publish " + suggestion;
      return j;
    case smtp::MxRoute::Kind::kHosts:
      break;
  }
  if (!a.mx.empty()) {
    j["valid"] = true;
    j["details"] = "bounces go to " + route.hosts.front();
    ok = true;
    return j;
  }
  // No MX: the domain's own address is the implicit MX (RFC 5321 5.1).
  bool any = false, failed = false;
  for (DnsType t : {DnsType::kA, DnsType::kAaaa}) {
    DnsAnswer addr = dns.query(domain, t);
    any = any || !addr.addresses.empty();
    failed = failed || temporary(addr);
  }
  j["valid"] = any;
  ok = any;
  j["details"] = any      ? "no MX record; the domain's own address receives bounces (implicit MX)"
                 : failed ? "no MX record, and the address lookup of " + domain + " failed"
                          : "no MX record and no address: bounces cannot be delivered";
  j["publish"] = suggestion;
  return j;
}

}  // namespace

bool is_checkable_domain(std::string_view domain) {
  if (!is_dns_name(domain) || domain.find('.') == std::string_view::npos) return false;
  return std::none_of(domain.begin(), domain.end(), [](char c) { return c == '_'; });
}

std::optional<std::vector<std::pair<std::string, std::string>>> parse_tag_list(std::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find(';', start);
    if (end == std::string_view::npos) end = text.size();
    std::string spec = trim(text.substr(start, end - start));
    start = end + 1;
    if (spec.empty()) {  // a trailing ';' (allowed), or nothing at all
      if (end == text.size()) break;
      return std::nullopt;
    }
    auto eq = spec.find('=');
    if (eq == std::string::npos) return std::nullopt;
    std::string tag = trim(std::string_view(spec).substr(0, eq));
    if (tag.empty() || std::any_of(tag.begin(), tag.end(), [](char c) {
          return !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_');
        }))
      return std::nullopt;
    for (const auto& [t, v] : out)
      if (t == tag) return std::nullopt;
    out.emplace_back(tag, trim(std::string_view(spec).substr(eq + 1)));
  }
  return out;
}

json check_domain(smtp::DnsClient& dns, const std::string& domain, const DomainCheckOptions& o) {
  json report;
  report["domain"] = domain;
  report["outbound_ip"] = o.outbound_ip.empty() ? json("unknown") : json(o.outbound_ip);
  report["outbound_ip_source"] = o.outbound_ip_source;

  SpfResult spf = SpfResult::kNone;
  report["spf"] = spf_part(dns, domain, o, spf);
  bool dkim_ok = true, dkim_signs = false;
  report["dkim"] = dkim_part(dns, domain, o, dkim_ok, dkim_signs);
  bool dmarc_ok = false;
  report["dmarc"] = dmarc_part(dns, domain, spf == SpfResult::kPass || dkim_signs, dmarc_ok);
  bool mx_ok = false;
  report["mx"] = mx_part(dns, domain, mx_ok);

  json problems = json::array();
  if (spf != SpfResult::kPass)
    problems.push_back("spf: " + report["spf"]["result"].get<std::string>() + ": " +
                       report["spf"]["details"].get<std::string>());
  if (!dkim_ok) {  // only the selectors at fault: one that passes is no problem
    const auto& selectors = report["dkim"]["selectors"];
    bool listed = false;
    for (const auto& s : selectors) {
      if (s.value("found", false) && s.value("valid", false) && s.value("matches", false)) continue;
      problems.push_back("dkim: " + s.value("selector", std::string()) + ": " + s.value("details", std::string()));
      listed = true;
    }
    if (!listed) problems.push_back("dkim: " + report["dkim"]["details"].get<std::string>());
  }
  if (!dmarc_ok) problems.push_back("dmarc: " + report["dmarc"]["details"].get<std::string>());
  if (!mx_ok) problems.push_back("mx: " + report["mx"]["details"].get<std::string>());
  report["ok"] = problems.empty();
  report["problems"] = problems;
  return report;
}

std::optional<std::string> outbound_address(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  std::string service = std::to_string(port);
  if (getaddrinfo(host.c_str(), service.c_str(), &hints, &list) != 0) return std::nullopt;
  std::optional<std::string> out;
  for (addrinfo* ai = list; ai && !out; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
      char text[INET6_ADDRSTRLEN] = {};
      const void* addr = local.ss_family == AF_INET
                             ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr)
                             : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr);
      if (inet_ntop(local.ss_family, addr, text, sizeof text)) out = std::string(text);
    }
    ::close(fd);
  }
  freeaddrinfo(list);
  return out;
}

std::optional<std::string> outbound_address_to_internet() {
  // a.root-servers.net: a stable public address; only the routing table is consulted.
  if (auto v4 = outbound_address("198.41.0.4", 53)) return v4;
  return outbound_address("2001:503:ba3e::2:30", 53);
}

}  // namespace websmtp::dns
