// MX resolution for direct delivery. libresolv does the wire work (res_nmkquery, res_nsend,
// ns_parserr); each thread has its own res_state, since one must not be shared between
// threads, and none blocks another. The cache is shared by every worker.
#include "websmtp/smtp/resolver.hpp"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <resolv.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace websmtp::smtp {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string strip_dot(std::string s) {
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

DnsAnswer failed(DnsStatus status, std::string detail) {
  DnsAnswer a;
  a.status = status;
  a.detail = std::move(detail);
  return a;
}

std::uint32_t read_u32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

const char* type_name(DnsType t) {
  switch (t) {
    case DnsType::kA:
      return "A";
    case DnsType::kMx:
      return "MX";
    case DnsType::kAaaa:
      return "AAAA";
    case DnsType::kTxt:
      return "TXT";
  }
  return "?";
}

}  // namespace

DnsAnswer parse_dns_response(const unsigned char* msg, std::size_t len, DnsType type) {
  ns_msg h;
  if (ns_initparse(msg, static_cast<int>(len), &h) < 0) return failed(DnsStatus::kError, "malformed DNS response");
  DnsAnswer a;
  switch (ns_msg_getflag(h, ns_f_rcode)) {
    case ns_r_noerror:
      a.status = DnsStatus::kOk;
      break;
    case ns_r_nxdomain:
      a.status = DnsStatus::kNxDomain;
      a.detail = "NXDOMAIN";
      break;
    case ns_r_servfail:
      return failed(DnsStatus::kTempFail, "SERVFAIL");
    default:
      return failed(DnsStatus::kError, "DNS error rcode " + std::to_string(ns_msg_getflag(h, ns_f_rcode)));
  }
  std::uint32_t ttl = std::numeric_limits<std::uint32_t>::max();
  for (int i = 0; i < ns_msg_count(h, ns_s_an); ++i) {
    ns_rr rr;
    if (ns_parserr(&h, ns_s_an, i, &rr) < 0) return failed(DnsStatus::kError, "malformed DNS answer");
    if (ns_rr_class(rr) != ns_c_in || ns_rr_type(rr) != static_cast<int>(type)) continue;  // e.g. a CNAME
    const unsigned char* rd = ns_rr_rdata(rr);
    std::size_t rdlen = ns_rr_rdlen(rr);
    if (type == DnsType::kMx) {
      char name[NS_MAXDNAME];
      if (rdlen < 3 || dn_expand(ns_msg_base(h), ns_msg_end(h), rd + 2, name, sizeof name) < 0)
        return failed(DnsStatus::kError, "malformed MX record");
      a.mx.push_back({(rd[0] << 8) | rd[1], lower(strip_dot(name))});
    } else if (type == DnsType::kTxt) {
      // One or more <character-string>s (a length byte, then that many bytes), joined with
      // nothing in between (RFC 7208 3.3, RFC 6376 3.6.2.2): long keys span several.
      std::string text;
      for (std::size_t i = 0; i < rdlen;) {
        std::size_t n = rd[i];
        if (i + 1 + n > rdlen) return failed(DnsStatus::kError, "malformed TXT record");
        text.append(reinterpret_cast<const char*>(rd + i + 1), n);
        i += 1 + n;
      }
      a.txt.push_back(std::move(text));
    } else {
      int family = type == DnsType::kA ? AF_INET : AF_INET6;
      std::size_t want = type == DnsType::kA ? 4 : 16;
      if (rdlen != want) return failed(DnsStatus::kError, "malformed address record");
      char text[INET6_ADDRSTRLEN];
      if (!inet_ntop(family, rd, text, sizeof text)) return failed(DnsStatus::kError, "malformed address record");
      a.addresses.emplace_back(text);
    }
    ttl = std::min<std::uint32_t>(ttl, ns_rr_ttl(rr));
  }
  if (empty_answer(a)) {
    // Negative answer (NXDOMAIN or NODATA): cached for the SOA's TTL (RFC 2308 5), else not at all.
    ttl = 0;
    for (int i = 0; i < ns_msg_count(h, ns_s_ns); ++i) {
      ns_rr rr;
      if (ns_parserr(&h, ns_s_ns, i, &rr) < 0) break;
      if (ns_rr_type(rr) != ns_t_soa || ns_rr_rdlen(rr) < 20) continue;
      ttl = std::min<std::uint32_t>(ns_rr_ttl(rr), read_u32(ns_rr_rdata(rr) + ns_rr_rdlen(rr) - 4));
      break;
    }
  }
  a.ttl = ttl;
  return a;
}

namespace {

// One res_state per thread (a res_state must not be used by two threads at once).
struct ThreadResolver {
  struct __res_state state;
  bool ready = false;
  ThreadResolver() { std::memset(&state, 0, sizeof state); }
  ~ThreadResolver() {
    if (ready) res_nclose(&state);
  }
};

class SystemDnsClient final : public DnsClient {
 public:
  explicit SystemDnsClient(const std::string& server) {
    if (server.empty()) return;
    auto parsed = parse_dns_server(server);
    if (!parsed) throw std::invalid_argument("'" + server + "' is not an IPv4 or IPv6 address with an optional :port");
    family_ = parsed->family;
    if (family_ == AF_INET) {
      server4_.sin_family = AF_INET;
      inet_pton(AF_INET, parsed->ip.c_str(), &server4_.sin_addr);
      server4_.sin_port = htons(static_cast<std::uint16_t>(parsed->port));
    } else {
      server6_.sin6_family = AF_INET6;
      inet_pton(AF_INET6, parsed->ip.c_str(), &server6_.sin6_addr);
      server6_.sin6_port = htons(static_cast<std::uint16_t>(parsed->port));
    }
  }

  DnsAnswer query(const std::string& name, DnsType type) override {
    thread_local ThreadResolver tr;
    if (!tr.ready) {
      if (res_ninit(&tr.state) != 0) return failed(DnsStatus::kTempFail, "cannot initialise the resolver");
      tr.ready = true;
    }
    if (family_ == AF_INET) {
      tr.state.nsaddr_list[0] = server4_;
      tr.state.nscount = 1;
    } else if (family_ == AF_INET6) {
      // glibc keeps an IPv6 name server in _u._ext.nsaddrs[i] and marks the slot of
      // nsaddr_list as unused (sin_family 0), as res_init does for one in resolv.conf; the
      // storage is malloc'd because res_nclose frees it.
      auto*& slot = tr.state._u._ext.nsaddrs[0];
      if (!slot) slot = static_cast<sockaddr_in6*>(std::calloc(1, sizeof(sockaddr_in6)));
      if (!slot) return failed(DnsStatus::kTempFail, "cannot initialise the resolver");
      *slot = server6_;
      std::memset(&tr.state.nsaddr_list[0], 0, sizeof tr.state.nsaddr_list[0]);
      tr.state.nscount = 1;
    }
    unsigned char question[NS_PACKETSZ];
    int qlen = res_nmkquery(&tr.state, ns_o_query, name.c_str(), ns_c_in, static_cast<int>(type), nullptr, 0, nullptr,
                            question, sizeof question);
    if (qlen < 0) return failed(DnsStatus::kError, "cannot ask for " + name);
    std::vector<unsigned char> answer(65536);
    int n = res_nsend(&tr.state, question, qlen, answer.data(), static_cast<int>(answer.size()));
    if (n < 0)
      return failed(DnsStatus::kTempFail,
                    std::string(type_name(type)) + " lookup of " + name + ": no answer (timeout or SERVFAIL)");
    DnsAnswer a = parse_dns_response(answer.data(), static_cast<std::size_t>(n), type);
    if (!a.detail.empty()) a.detail = std::string(type_name(type)) + " lookup of " + name + ": " + a.detail;
    return a;
  }

 private:
  int family_ = 0;  // 0: resolv.conf's servers
  sockaddr_in server4_{};
  sockaddr_in6 server6_{};
};

}  // namespace

std::optional<DnsServerAddress> parse_dns_server(std::string_view text) {
  DnsServerAddress out;
  std::string_view host = text;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {  // [v6] or [v6]:port
    auto close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = text.substr(1, close - 1);
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port = rest.substr(1);
      if (port.empty()) return std::nullopt;
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {  // v4:port
    auto colon = text.find(':');
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (port.empty()) return std::nullopt;
  }
  if (!port.empty()) {
    int p = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc() || end != port.data() + port.size() || p < 1 || p > 65535) return std::nullopt;
    out.port = p;
  }
  out.ip = std::string(host);
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, out.ip.c_str(), &v4) == 1) {
    if (text.front() == '[') return std::nullopt;  // brackets are for IPv6
    out.family = AF_INET;
  } else if (inet_pton(AF_INET6, out.ip.c_str(), &v6) == 1) {
    out.family = AF_INET6;
  } else {
    return std::nullopt;
  }
  return out;
}

std::unique_ptr<DnsClient> make_system_dns_client(const std::string& server) {
  return std::make_unique<SystemDnsClient>(server);
}

void order_mx(std::vector<MxRecord>& records, std::mt19937_64& rng) {
  std::shuffle(records.begin(), records.end(), rng);
  std::stable_sort(records.begin(), records.end(),
                   [](const MxRecord& a, const MxRecord& b) { return a.preference < b.preference; });
}

MxRoute route_from_mx_answer(const std::string& domain, DnsAnswer answer, std::mt19937_64& rng) {
  MxRoute route;
  switch (answer.status) {
    case DnsStatus::kNxDomain:
      route.kind = MxRoute::Kind::kNoDomain;
      route.detail = "domain " + domain + " does not exist (NXDOMAIN)";
      return route;
    case DnsStatus::kTempFail:
    case DnsStatus::kError:
      route.kind = MxRoute::Kind::kTempFail;
      route.detail = answer.detail.empty() ? "MX lookup of " + domain + " failed" : answer.detail;
      return route;
    case DnsStatus::kOk:
      break;
  }
  route.kind = MxRoute::Kind::kHosts;
  if (answer.mx.empty()) {  // RFC 5321 5.1: the domain itself is the implicit MX
    route.hosts.push_back(domain);
    route.detail = "implicit MX";
    return route;
  }
  if (std::any_of(answer.mx.begin(), answer.mx.end(), [](const MxRecord& r) { return r.exchange.empty(); })) {
    route.kind = MxRoute::Kind::kNullMx;
    route.detail = "domain " + domain + " accepts no mail (null MX, RFC 7505)";
    return route;
  }
  order_mx(answer.mx, rng);
  for (auto& r : answer.mx)
    if (std::find(route.hosts.begin(), route.hosts.end(), r.exchange) == route.hosts.end())
      route.hosts.push_back(std::move(r.exchange));
  return route;
}

MxResolver::MxResolver(std::shared_ptr<DnsClient> dns, const Clock& clock)
    : dns_(std::move(dns)), clock_(clock), rng_(std::random_device{}()) {}

DnsAnswer MxResolver::lookup(const std::string& name, DnsType type) {
  auto key = std::make_pair(lower(name), static_cast<std::uint16_t>(type));
  {
    std::lock_guard lock(mu_);
    if (auto it = cache_.find(key); it != cache_.end()) {
      if (clock_.now_ms() < it->second.expires_ms) return it->second.answer;
      cache_.erase(it);
    }
  }
  DnsAnswer a = dns_->query(key.first, type);  // not under the lock: a slow server must not stall the others
  bool cacheable = a.status == DnsStatus::kOk || a.status == DnsStatus::kNxDomain;
  bool negative = a.status == DnsStatus::kNxDomain || empty_answer(a);
  std::uint32_t ttl = std::min(a.ttl, negative ? kMaxNegativeTtl : kMaxTtl);
  if (cacheable && ttl > 0) {
    std::lock_guard lock(mu_);
    if (cache_.size() > 100'000) cache_.clear();  // a bound, not a policy: the workload never gets near it
    cache_[key] = Entry{a, clock_.now_ms() + std::int64_t{ttl} * 1000};
  }
  return a;
}

MxRoute MxResolver::route(const std::string& domain) {
  DnsAnswer answer = lookup(domain, DnsType::kMx);
  MxRoute r;
  {
    std::lock_guard lock(mu_);
    r = route_from_mx_answer(domain, std::move(answer), rng_);
  }
  if (r.kind == MxRoute::Kind::kHosts && r.detail == "implicit MX") {
    std::string detail;
    bool permanent = false;
    if (addresses(domain, &detail, &permanent).empty()) {
      r.kind = permanent ? MxRoute::Kind::kNoDomain : MxRoute::Kind::kTempFail;
      r.detail = permanent ? "domain " + domain + " has no MX and no address record" : detail;
      r.hosts.clear();
    }
  }
  return r;
}

std::vector<std::string> MxResolver::addresses(const std::string& host, std::string* detail, bool* permanent) {
  std::vector<std::string> out;
  bool all_permanent = true;
  std::string why;
  for (DnsType t : {DnsType::kA, DnsType::kAaaa}) {
    DnsAnswer a = lookup(host, t);
    if (a.status == DnsStatus::kOk) {
      out.insert(out.end(), a.addresses.begin(), a.addresses.end());
    } else {
      if (a.status != DnsStatus::kNxDomain) all_permanent = false;
      if (why.empty()) why = a.detail;
    }
  }
  if (out.empty() && why.empty()) why = "host " + host + " has no address record";
  if (detail) *detail = why;
  if (permanent) *permanent = out.empty() && all_permanent;
  return out;
}

}  // namespace websmtp::smtp
