#pragma once
// The MX resolver of direct delivery (DELIVERY=mx): which hosts take a domain's mail, in
// which order, and at which addresses. Three layers, so that the logic is tested without a
// DNS server: parsing a DNS response (pure), ordering MX records (pure, the randomness is an
// argument), and a TTL-honouring cache in front of a DnsClient (res_nsend on a per-thread
// res_state, or a test double), with an injected clock.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "websmtp/common/clock.hpp"
#include "websmtp/common/idn.hpp"

namespace websmtp::smtp {

enum class DnsType : std::uint16_t { kA = 1, kMx = 15, kTxt = 16, kAaaa = 28 };

// What a name server said about one question.
enum class DnsStatus {
  kOk,        // answers (possibly none of the asked type: NODATA)
  kNxDomain,  // the name does not exist: permanent
  kTempFail,  // SERVFAIL, timeout, no server reachable: try later
  kError,     // a malformed response or a refused query: try later as well
};

struct MxRecord {
  int preference = 0;
  std::string exchange;  // without the trailing dot; empty: the root (a null MX, RFC 7505)
  friend bool operator==(const MxRecord&, const MxRecord&) = default;
};

struct DnsAnswer {
  DnsStatus status = DnsStatus::kTempFail;
  std::vector<MxRecord> mx;           // MX answers
  std::vector<std::string> addresses;  // A / AAAA answers, as text
  std::vector<std::string> txt;        // TXT answers, each record's strings joined (RFC 7208 3.3)
  std::uint32_t ttl = 0;               // the smallest TTL of the answers (negative: the SOA's)
  std::string detail;                  // for logs and the recipients' status
};

// No record of the asked type (NXDOMAIN or NODATA).
inline bool empty_answer(const DnsAnswer& a) { return a.mx.empty() && a.addresses.empty() && a.txt.empty(); }

// Parses a DNS response to a question of `type` (RFC 1035 4.1). Pure.
DnsAnswer parse_dns_response(const unsigned char* msg, std::size_t len, DnsType type);

// A name server client: one question, one answer. Thread-safe.
class DnsClient {
 public:
  virtual ~DnsClient() = default;
  virtual DnsAnswer query(const std::string& name, DnsType type) = 0;
};

// libresolv: res_nquery's machinery (res_nmkquery + res_nsend) on a res_state per thread,
// pointed at `server` (see parse_dns_server) when it is not empty, else at /etc/resolv.conf's.
// Throws std::invalid_argument for a server that parse_dns_server refuses.
std::unique_ptr<DnsClient> make_system_dns_client(const std::string& server);

// DNS_SERVER: "1.2.3.4", "1.2.3.4:5353", "::1", "[::1]" or "[::1]:5353" (port 53 by default).
struct DnsServerAddress {
  int family = 0;  // AF_INET or AF_INET6
  std::string ip;  // without brackets
  int port = 53;
};
std::optional<DnsServerAddress> parse_dns_server(std::string_view text);

// Where a domain's mail goes.
struct MxRoute {
  enum class Kind {
    kHosts,     // try `hosts` in order
    kNullMx,    // the domain accepts no mail (RFC 7505): fail
    kNoDomain,  // NXDOMAIN (or no MX and no address): fail
    kTempFail,  // could not tell now: defer
  };
  Kind kind = Kind::kTempFail;
  std::vector<std::string> hosts;  // MX hosts in preference order; the domain itself for an implicit MX
  std::string detail;
};

// Sorts by preference, shuffling each run of equal preference with `rng` (RFC 5321 5.1).
void order_mx(std::vector<MxRecord>& records, std::mt19937_64& rng);

// Turns the answer to an MX question into a route (without the implicit-MX lookup). Pure.
// NODATA gives kHosts with the domain itself (implicit MX; its addresses decide later).
MxRoute route_from_mx_answer(const std::string& domain, DnsAnswer answer, std::mt19937_64& rng);

// Lower case, and the A-label form of an internationalised domain: common/idn.hpp's, the one
// converter (validation and the message writer use it too).
using websmtp::to_ascii_domain;

// The resolver the MX transport uses, shared by every worker: answers are cached for their
// TTL (at most kMaxTtl; negative answers for their SOA's TTL, at most kMaxNegativeTtl),
// failures are not cached.
class MxResolver {
 public:
  static constexpr std::uint32_t kMaxTtl = 86400;
  static constexpr std::uint32_t kMaxNegativeTtl = 3600;

  MxResolver(std::shared_ptr<DnsClient> dns, const Clock& clock);

  MxRoute route(const std::string& domain);
  // A host's addresses (IPv4 first, then IPv6); empty with `detail` when it has none now.
  std::vector<std::string> addresses(const std::string& host, std::string* detail = nullptr, bool* permanent = nullptr);

  // The cached answer or a fresh one (cached when it may be).
  DnsAnswer lookup(const std::string& name, DnsType type);

 private:
  std::shared_ptr<DnsClient> dns_;
  const Clock& clock_;
  std::mutex mu_;
  struct Entry {
    DnsAnswer answer;
    std::int64_t expires_ms = 0;
  };
  std::map<std::pair<std::string, std::uint16_t>, Entry> cache_;
  std::mt19937_64 rng_;
};

}  // namespace websmtp::smtp
