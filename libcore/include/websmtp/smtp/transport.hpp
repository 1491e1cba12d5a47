#pragma once
// Delivery transports. A worker owns one transport and calls it for one job at a time; a
// transport keeps whatever connection it has open across jobs.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "websmtp/smtp/reply.hpp"
#include "websmtp/smtp/tls.hpp"

namespace websmtp::smtp {

struct Envelope {
  std::string_view ref;     // the job's ref (names the sandbox file, tags logs)
  std::string_view sender;  // MAIL FROM
  std::vector<std::string_view> recipients;
  // Called just before the message data goes on the wire (after the peer's 354), so the
  // caller can note that from here the outcome may be uncertain.
  std::function<void()> before_data;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // One reply per envelope recipient, in order. Never throws for network trouble: a failed
  // connection is a reply with code 0 for every recipient.
  virtual std::vector<Reply> deliver(const Envelope& env, std::string_view message) = 0;
};

// Writes each message to `<dir>/<ref>.eml` instead of sending it (DELIVERY=sandbox).
std::unique_ptr<Transport> make_sandbox(std::string dir);

struct RelayOptions {
  std::string host;
  std::uint16_t port = 25;
  std::string helo;  // EHLO name
  std::string user;
  std::string password;
  TlsMode tls = TlsMode::kOpportunistic;
  bool verify_tls = true;
  std::int64_t connect_timeout_ms = 30'000;
  std::int64_t command_timeout_ms = 300'000;
  std::int64_t data_timeout_ms = 600'000;
};

// A relay client (Poco::Net underneath) with its session kept open across jobs.
std::unique_ptr<Transport> make_relay(const RelayOptions& options);

}  // namespace websmtp::smtp
