#pragma once
// Turns a client's JSON request into a validated MailRequest. Pure: no I/O, no clock.
#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

#include "websmtp/common/error.hpp"
#include "websmtp/job/model.hpp"

namespace websmtp::job {

struct Limits {
  int max_recipients = 1000;
};

// Parses "Name <local@domain>", "\"Quoted, Name\" <local@domain>" or "local@domain".
// `field` is the JSON path used in the error.
Result<Mailbox> parse_mailbox(std::string_view text, const std::string& field);

// True when the addr-spec is one we will put into an SMTP envelope: a dot-atom or quoted local
// part (<= 64 octets; UTF-8 allowed, RFC 6531), a domain of LDH labels, an address literal, or a
// domain in U-labels that libidn2 turns into valid A-labels (IDNA2008; sent in that form),
// <= 254 octets as given and with the domain in A-labels.
bool is_valid_address(std::string_view addr);

// Validates a custom header (name: RFC 5322 field name not reserved by the gateway; value:
// no CR, LF or NUL). Returns the error or nullopt.
std::optional<Error> check_custom_header(std::string_view name, std::string_view value, const std::string& field);

// The body as a JSON object: kInvalid "invalid_json" when it is not JSON or not an object,
// "json_too_deep" past 32 levels, "duplicate_key" (with its path) when a key repeats
// (strict_json.hpp).
Result<nlohmann::json> parse_json_object(std::string_view body);

Result<MailRequest> parse_request(std::string_view json_body, const Limits& limits);
// One job given as an already parsed JSON value (a /mail/batch entry).
Result<MailRequest> parse_job(const nlohmann::json& job, const Limits& limits);

}  // namespace websmtp::job
