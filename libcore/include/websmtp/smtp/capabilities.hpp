#pragma once
// What a peer offers in its EHLO reply, and what we pick from it. Pure.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace websmtp::smtp {

class Capabilities {
 public:
  Capabilities() = default;  // nothing offered (no EHLO yet, or a HELO-only peer)
  // From the lines of a 2xx EHLO reply: the first names the server, each further one is a
  // keyword with its parameters (RFC 5321 4.1.1.1), e.g. "PIPELINING", "SIZE 10240000".
  static Capabilities from_ehlo(const std::vector<std::string>& lines);

  // Whether the keyword is offered (case-insensitive; parameters are ignored).
  bool has(std::string_view keyword) const;
  // The SASL mechanisms of "AUTH PLAIN LOGIN" (RFC 4954) and of the older "AUTH=PLAIN LOGIN".
  const std::vector<std::string>& auth_mechanisms() const { return auth_; }
  bool offers_auth(std::string_view mechanism) const;

 private:
  std::vector<std::string> keywords_;  // upper case, without parameters
  std::vector<std::string> auth_;      // upper case
};

enum class AuthMechanism { kPlain, kLogin };
// PLAIN (one round trip) when offered, else LOGIN; nullopt when the peer offers neither.
std::optional<AuthMechanism> choose_auth(const Capabilities& c);

}  // namespace websmtp::smtp
