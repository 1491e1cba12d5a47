#include "websmtp/auth/principal.hpp"

#include <algorithm>

#include "websmtp/common/text.hpp"

namespace websmtp::auth {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string_view domain_of(std::string_view address) {
  auto at = address.rfind('@');
  return at == std::string_view::npos ? std::string_view{} : address.substr(at + 1);
}

bool contains(const std::vector<std::string>& sorted, const std::string& v) {
  return std::binary_search(sorted.begin(), sorted.end(), v);
}

Error forbidden(std::string message, std::string field) {
  return Error{ErrorKind::kForbidden, "forbidden", std::move(message), std::move(field)};
}

}  // namespace

std::optional<Error> charge(const Principal& p, std::int64_t jobs, std::int64_t now_ms, Decision& d) {
  d = Decision{};
  if (!p.limiter || (!p.per_minute && !p.per_day)) return std::nullopt;
  Decision minute, day;
  if (p.per_minute) minute = p.limiter->take(p.id + "#m", p.per_minute, jobs, now_ms);
  if (minute.allowed && p.per_day) {
    day = p.limiter->take(p.id + "#d", p.per_day, jobs, now_ms);
    if (!day.allowed && p.per_minute) p.limiter->refund(p.id + "#m", p.per_minute, jobs);  // both or neither
  }
  d = !minute.allowed ? minute : !day.allowed ? day : tighter(minute, day);
  if (d.allowed) return std::nullopt;
  Error e{ErrorKind::kRateLimited, "rate_limited",
          "over this caller's rate limit of " + std::to_string(d.limit) + " jobs; retry after " +
              std::to_string(d.retry_after_s) + " s",
          ""};
  e.retry_after_s = d.retry_after_s;
  return e;
}

Decision peek(const Principal& p, std::int64_t now_ms) {
  if (!p.limiter) return Decision{};
  Decision m = p.per_minute ? p.limiter->peek(p.id + "#m", p.per_minute, now_ms) : Decision{};
  Decision d = p.per_day ? p.limiter->peek(p.id + "#d", p.per_day, now_ms) : Decision{};
  return tighter(m, d);
}

std::optional<Error> check_policy(const KeyPolicy& policy, const job::MailRequest& req) {
  if (!policy.senders.empty()) {
    std::string from = lower(req.from.address);
    if (!contains(policy.senders, from) && !contains(policy.senders, "*@" + std::string(domain_of(from))))
      return forbidden("this key may not send from " + req.from.address, "from");
  }
  std::size_t n = req.to.size() + req.cc.size() + req.bcc.size();
  if (policy.max_recipients && static_cast<std::int64_t>(n) > *policy.max_recipients)
    return forbidden("this key may send to at most " + std::to_string(*policy.max_recipients) + " recipients per job",
                     "to");
  if (!policy.recipients.empty() || !policy.recipient_domains.empty()) {
    for (auto [list, name] : {std::pair{&req.to, "to"}, {&req.cc, "cc"}, {&req.bcc, "bcc"}}) {
      for (std::size_t i = 0; i < list->size(); ++i) {
        std::string a = lower((*list)[i].address);
        std::string field = std::string(name) + "[" + std::to_string(i) + "]";
        if (!policy.recipients.empty() && !contains(policy.recipients, a))
          return forbidden("this key may not send to " + (*list)[i].address, field);
        if (!policy.recipient_domains.empty() && !contains(policy.recipient_domains, std::string(domain_of(a))))
          return forbidden("this key may not send to the domain of " + (*list)[i].address, field);
      }
    }
  }
  return std::nullopt;
}

std::optional<Error> check_message_size(const KeyPolicy& policy, std::size_t message_bytes) {
  if (policy.max_message_bytes && static_cast<std::int64_t>(message_bytes) > *policy.max_message_bytes)
    return forbidden("the message is " + std::to_string(message_bytes) + " bytes, over this key's limit of " +
                         std::to_string(*policy.max_message_bytes),
                     "body");
  return std::nullopt;
}

}  // namespace websmtp::auth
