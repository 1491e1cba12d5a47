#pragma once
// A webhook event as it is stored and sent, its signature and its retry schedule. Pure: no
// I/O, no clock (the caller passes the time).
#include <cstdint>
#include <string>
#include <string_view>

#include "websmtp/job/model.hpp"

namespace websmtp::webhook {

// How long an event is retried before it is dropped (api.md: up to 24 h).
constexpr std::int64_t kGiveUpAfterS = 24 * 3600;

// {"created":<unix s>,"data":<the public status>,"id":"<event id>","type":"job.completed"}:
// the exact bytes POSTed on every attempt. `data` is what GET /mail/status/:ref answers.
std::string completed_event_body(std::string_view event_id, std::int64_t created_s, const job::Job& job);

// The Websmtp-Signature header value: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed
// with the secret>.
std::string signature_header(std::string_view secret, std::int64_t t_s, std::string_view body);

// The wait before attempt `failed_attempts + 1` after `failed_attempts` (>= 1) failures:
// min_ms doubling each time, capped at max_ms.
std::int64_t retry_delay_ms(int failed_attempts, std::int64_t min_ms, std::int64_t max_ms);

}  // namespace websmtp::webhook
