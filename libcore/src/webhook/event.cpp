#include "websmtp/webhook/event.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "websmtp/auth/crypto.hpp"
#include "websmtp/job/json.hpp"

namespace websmtp::webhook {

std::string completed_event_body(std::string_view event_id, std::int64_t created_s, const job::Job& job) {
  nlohmann::json event = {{"id", std::string(event_id)},
                          {"type", "job.completed"},
                          {"created", created_s},
                          {"data", job::status_json(job)}};
  // Dumped as the status route dumps a status (service/status.cpp), so `data` is byte for byte
  // what GET /mail/status/:ref answers.
  return event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string signature_header(std::string_view secret, std::int64_t t_s, std::string_view body) {
  std::string t = std::to_string(t_s);
  std::string signed_text;
  signed_text.reserve(t.size() + 1 + body.size());
  signed_text += t;
  signed_text += '.';
  signed_text += body;
  return "t=" + t + ",v1=" + auth::to_hex(auth::hmac_sha256(secret, signed_text));
}

std::int64_t retry_delay_ms(int failed_attempts, std::int64_t min_ms, std::int64_t max_ms) {
  std::int64_t d = std::max<std::int64_t>(min_ms, 1);
  for (int i = 1; i < failed_attempts && d < max_ms; ++i) d *= 2;
  return std::min(d, max_ms);
}

}  // namespace websmtp::webhook
