#pragma once
// SPF (RFC 7208): check_host() for one client address and one domain, over a DnsClient, so
// that it is tested with a fake DNS and used by `websmtpctl domain check` against the real one.
// What it evaluates: all, include, a, mx, ptr (counted as a lookup, never matches: RFC 7208
// 5.5 says not to use it), ip4, ip6 (with CIDR lengths, a/mx dual lengths), exists, the
// redirect= modifier, the qualifiers + - ~ ?, macros (section 7), the 10-lookup limit and the
// void-lookup limit (4.6.4), both permerror.
#include <string>
#include <vector>

#include "websmtp/smtp/resolver.hpp"

namespace websmtp::dns {

enum class SpfResult { kNone, kNeutral, kPass, kFail, kSoftFail, kTempError, kPermError };
const char* to_string(SpfResult r);  // "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"

inline constexpr int kSpfMaxDnsLookups = 10;  // include, a, mx, ptr, exists, redirect (RFC 7208 4.6.4)
inline constexpr int kSpfMaxVoidLookups = 2;  // lookups answering NXDOMAIN or no record
inline constexpr int kSpfMaxMxNames = 10;     // MX hosts one mx mechanism may look at

struct SpfRequest {
  std::string ip;      // the client address, IPv4 or IPv6 text
  std::string domain;  // the MAIL FROM domain (or HELO name)
  std::string sender;  // local@domain for %{s} / %{l}; empty: postmaster@domain
  std::string helo;    // for %{h}; empty: "unknown"
};

struct SpfCheck {
  SpfResult result = SpfResult::kNone;
  std::string record;   // the domain's own v=spf1 record; empty when it has none
  std::string matched;  // the directive that decided ("-all", "ip4:192.0.2.0/24"); empty: none did
  std::string detail;   // why, as a sentence
  int dns_lookups = 0;  // counted against kSpfMaxDnsLookups
  int void_lookups = 0;
};

// The TXT strings that are SPF records ("v=spf1" alone or followed by a space, any case).
std::vector<std::string> spf_records(const std::vector<std::string>& txt);

// check_host(ip, domain, sender). Never throws; DNS failures give kTempError.
SpfCheck check_spf(smtp::DnsClient& dns, const SpfRequest& request);

}  // namespace websmtp::dns
