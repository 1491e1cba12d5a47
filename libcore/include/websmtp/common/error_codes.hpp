#pragma once
// Every `code` an error answer can carry, in one list: the OpenAPI document names each one
// (tests/integration/test_openapi.py checks that every code literal in the sources is here and
// in docs/openapi.json), and /metrics labels refused submits with them, so the label's values
// stay a bounded set. A new code goes here first.
#include <array>
#include <cstddef>
#include <string_view>

namespace websmtp {

inline constexpr std::array<std::string_view, 59> kErrorCodes = {
    "already_completed",
    "bad_content_length",
    "bad_host",
    "bad_request",
    "body_timeout",
    "body_too_large",
    "busy",
    "callback_lookups_busy",
    "callback_url_not_public",
    "callback_url_unresolvable",
    "cors_origin_denied",
    "duplicate_dkim_key",
    "duplicate_key",
    "expectation_failed",
    "forbidden",
    "header_injection",
    "header_timeout",
    "headers_too_large",
    "http_version_not_supported",
    "idempotency_conflict",
    "idempotency_key_in_use",
    "internal",
    "internal_error",
    "invalid_address",
    "invalid_after",
    "invalid_attachment",
    "invalid_batch_size",
    "invalid_body",
    "invalid_callback_url",
    "invalid_config",
    "invalid_dkim_key",
    "invalid_domain",
    "invalid_header",
    "invalid_idempotency_key",
    "invalid_json",
    "invalid_limit",
    "invalid_ref",
    "invalid_since",
    "invalid_state",
    "invalid_subject",
    "invalid_type",
    "invalid_wait",
    "json_too_deep",
    "length_required",
    "method_not_allowed",
    "missing_field",
    "missing_origin",
    "not_found",
    "not_suppressed",
    "rate_limited",
    "reserved_header",
    "shutting_down",
    "store_unavailable",
    "too_many_recipients",
    "unauthorized",
    "unknown_field",
    "unknown_key",
    "unknown_ref",
    "webhooks_disabled",
};

// The code's place in kErrorCodes; kErrorCodes.size() for a code that is not in it.
constexpr std::size_t error_code_index(std::string_view code) {
  for (std::size_t i = 0; i < kErrorCodes.size(); ++i)
    if (kErrorCodes[i] == code) return i;
  return kErrorCodes.size();
}

}  // namespace websmtp
