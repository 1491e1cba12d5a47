#include <algorithm>

#include "websmtp/job/json.hpp"
#include "websmtp/job/model.hpp"

namespace websmtp::job {

bool is_final(RecipientState s) { return s == RecipientState::kDelivered || s == RecipientState::kFailed; }

const char* to_string(RecipientState s) {
  switch (s) {
    case RecipientState::kQueued:
      return "queued";
    case RecipientState::kDelivered:
      return "delivered";
    case RecipientState::kDeferred:
      return "deferred";
    case RecipientState::kFailed:
      return "failed";
  }
  return "queued";
}

const char* to_string(RecipientKind k) {
  switch (k) {
    case RecipientKind::kTo:
      return "to";
    case RecipientKind::kCc:
      return "cc";
    case RecipientKind::kBcc:
      return "bcc";
  }
  return "to";
}

std::optional<RecipientState> recipient_state_from(std::string_view s) {
  for (auto st :
       {RecipientState::kQueued, RecipientState::kDelivered, RecipientState::kDeferred, RecipientState::kFailed})
    if (s == to_string(st)) return st;
  return std::nullopt;
}

std::optional<RecipientKind> recipient_kind_from(std::string_view s) {
  for (auto k : {RecipientKind::kTo, RecipientKind::kCc, RecipientKind::kBcc})
    if (s == to_string(k)) return k;
  return std::nullopt;
}

bool all_final(const Job& job) {
  return std::all_of(job.recipients.begin(), job.recipients.end(),
                     [](const Recipient& r) { return is_final(r.state); });
}

const char* job_status(const Job& job) {
  if (all_final(job)) return "completed";
  return job.started ? "processing" : "not started";
}

nlohmann::json status_json(const Job& job) {
  nlohmann::json failed = nlohmann::json::array();
  nlohmann::json recipients = nlohmann::json::array();
  for (const auto& r : job.recipients) {
    if (r.state == RecipientState::kFailed) failed.push_back(r.address);
    nlohmann::json j = {
        {"address", r.address}, {"kind", to_string(r.kind)}, {"state", to_string(r.state)}, {"attempts", r.attempts}};
    if (r.smtp_code != 0) j["smtp_code"] = r.smtp_code;
    if (!r.smtp_reply.empty()) j["smtp_reply"] = r.smtp_reply;
    if (r.time != 0) j["time"] = r.time;
    if (r.state == RecipientState::kDeferred) j["next_attempt"] = r.next_attempt;
    if (!r.reason.empty()) j["reason"] = r.reason;
    if (r.possible_duplicate) j["possible_duplicate"] = true;
    if (!r.host.empty()) {
      j["host"] = r.host;
      j["tls"] = r.tls;
    }
    recipients.push_back(std::move(j));
  }
  return {{"id", job.ref},
          {"status", job_status(job)},
          {"failed", std::move(failed)},
          {"time_submitted", job.submitted},
          {"time_completed", job.completed},
          {"recipients", std::move(recipients)}};
}

namespace {

// A JSON string. Printable ASCII (addresses, nearly every SMTP reply) is written directly;
// anything else goes through nlohmann, which replaces invalid UTF-8 rather than failing.
void append_json_string(std::string& out, std::string_view s) {
  bool plain = std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
  if (!plain) {
    out += nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return;
  }
  out += '"';
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

void append_field(std::string& out, std::string_view key, std::int64_t v) {
  out += ",\"";
  out += key;
  out += "\":";
  out += std::to_string(v);
}

}  // namespace

// The store's recipients column, written on every commit: built directly rather than through
// a JSON document (which cost more than the SQLite insert around it).
std::string recipients_to_store(const std::vector<Recipient>& rs) {
  std::string out;
  out.reserve(16 + rs.size() * 64);
  out += '[';
  for (std::size_t i = 0; i < rs.size(); ++i) {
    const auto& r = rs[i];
    if (i) out += ',';
    out += "{\"a\":";
    append_json_string(out, r.address);
    append_field(out, "k", static_cast<int>(r.kind));
    append_field(out, "s", static_cast<int>(r.state));
    if (r.attempts) append_field(out, "n", r.attempts);
    if (r.smtp_code) append_field(out, "c", r.smtp_code);
    if (!r.smtp_reply.empty()) {
      out += ",\"r\":";
      append_json_string(out, r.smtp_reply);
    }
    if (r.time) append_field(out, "t", r.time);
    if (r.next_attempt) append_field(out, "x", r.next_attempt);
    if (!r.reason.empty()) {
      out += ",\"why\":";
      append_json_string(out, r.reason);
    }
    if (r.possible_duplicate) append_field(out, "dup", 1);
    if (!r.host.empty()) {
      out += ",\"h\":";
      append_json_string(out, r.host);
    }
    if (r.tls) append_field(out, "tls", 1);
    out += '}';
  }
  out += ']';
  return out;
}

std::vector<Recipient> recipients_from_store(std::string_view text) {
  std::vector<Recipient> out;
  auto arr = nlohmann::json::parse(text, nullptr, false);
  if (!arr.is_array()) return out;
  out.reserve(arr.size());
  for (const auto& j : arr) {
    Recipient r;
    r.address = j.value("a", "");
    r.kind = static_cast<RecipientKind>(std::clamp(j.value("k", 0), 0, 2));
    r.state = static_cast<RecipientState>(std::clamp(j.value("s", 0), 0, 3));
    r.attempts = j.value("n", 0);
    r.smtp_code = j.value("c", 0);
    r.smtp_reply = j.value("r", "");
    r.time = j.value("t", std::int64_t{0});
    r.next_attempt = j.value("x", std::int64_t{0});
    r.reason = j.value("why", "");
    r.possible_duplicate = j.value("dup", 0) != 0;
    r.host = j.value("h", "");
    r.tls = j.value("tls", 0) != 0;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace websmtp::job
