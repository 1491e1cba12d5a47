#pragma once
// Direct delivery (DELIVERY=mx): each recipient domain's MX hosts in order, one transaction
// per domain, over sessions kept in a pool shared by the workers. Which hosts: resolver.hpp;
// talking SMTP: session.hpp; keeping sessions: session_pool.hpp and session_reuse.hpp.
#include <cstdint>
#include <memory>
#include <string>

#include "websmtp/smtp/resolver.hpp"
#include "websmtp/smtp/session_pool.hpp"
#include "websmtp/smtp/transport.hpp"

namespace websmtp::smtp {

// MX_TLS: how to use TLS with MX hosts. No certificate is required to verify: MX hosts'
// certificates rarely name what the MX record says (Postfix's "may" and "encrypt" levels).
enum class MxTls { kOpportunistic, kRequire, kNone };
const char* to_string(MxTls t);
std::optional<MxTls> parse_mx_tls(std::string_view word);

struct MxOptions {
  std::uint16_t port = 25;  // SMTP_PORT
  MxTls tls = MxTls::kOpportunistic;
  std::string helo;
  std::int64_t connect_timeout_ms = 30'000;
  std::int64_t command_timeout_ms = 300'000;
  std::int64_t data_timeout_ms = 600'000;
  int max_hosts = 10;       // MX hosts tried per domain and attempt
  int max_connections = 5;  // connection attempts per domain and attempt (Postfix's smtp_mx_address_limit)
};

// Whether one recipient's reply from one MX host sends it to the next host in the same attempt
// (api.md: "the next MX is tried when one refuses, times out or answers 4xx"): a 4xx to MAIL,
// RCPT, DATA or the final dot, or no answer at all, unless the message may have been taken
// (uncertain) or the recipient failed for good unsent. Pure.
bool retry_at_next_mx(const Reply& r);

SessionOptions mx_session_options(const MxOptions& o);
SessionKey mx_session_key(const std::string& address, const MxOptions& o);

// Every worker's transport shares one resolver and one pool.
std::unique_ptr<Transport> make_mx(const MxOptions& options, std::shared_ptr<MxResolver> resolver,
                                   std::shared_ptr<SessionPool> pool);

}  // namespace websmtp::smtp
