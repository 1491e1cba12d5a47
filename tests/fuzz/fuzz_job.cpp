// Job parsing and validation as /mail/send and /mail/batch run it: the body is parsed once
// (strict JSON), then validated as one job, or as {"jobs":[...]} entry by entry.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.hpp"
#include "websmtp/job/envelope.hpp"
#include "websmtp/job/strict_json.hpp"
#include "websmtp/job/validation.hpp"

using namespace websmtp;
using websmtp::fuzz::has_cr_lf_nul;
using websmtp::fuzz::is_valid_utf8;

namespace {

// What the daemon would put into the 4xx answer must be writable as JSON as it is.
void check_error(const Error& e) {
  FUZZ_CHECK(!e.code.empty(), e.message);
  FUZZ_CHECK(!e.message.empty(), e.code);
  FUZZ_CHECK(e.kind == ErrorKind::kInvalid || e.kind == ErrorKind::kUnprocessable, e.code);
  FUZZ_CHECK(is_valid_utf8(e.message), e.code);
  FUZZ_CHECK(is_valid_utf8(e.field), e.code);
}

void check_mailbox(const job::Mailbox& m) {
  FUZZ_CHECK(job::is_valid_address(m.address), m.address);
  FUZZ_CHECK(!has_cr_lf_nul(m.address) && !has_cr_lf_nul(m.display_name), m.address);
  FUZZ_CHECK(is_valid_utf8(m.display_name), m.address);
}

void check_request(const job::MailRequest& req, const job::Limits& limits) {
  check_mailbox(req.from);
  FUZZ_CHECK(!req.to.empty(), "no to");
  for (const auto* list : {&req.to, &req.cc, &req.bcc})
    for (const auto& m : *list) check_mailbox(m);
  if (req.reply_to) check_mailbox(*req.reply_to);
  FUZZ_CHECK(!has_cr_lf_nul(req.subject), req.subject);
  FUZZ_CHECK(req.text || req.html, "no body");
  for (const auto& [name, value] : req.headers) {
    FUZZ_CHECK(!has_cr_lf_nul(name) && !has_cr_lf_nul(value), name);
    FUZZ_CHECK(!job::check_custom_header(name, value, "h"), name);
  }
  for (const auto& a : req.attachments) {
    FUZZ_CHECK(!a.filename.empty() && !has_cr_lf_nul(a.filename), a.filename);
    FUZZ_CHECK(a.filename.find_first_of("/\\") == std::string::npos, a.filename);
  }
  const std::size_t listed = req.to.size() + req.cc.size() + req.bcc.size();
  FUZZ_CHECK(listed <= static_cast<std::size_t>(limits.max_recipients), "over the limit");

  // The envelope: each mailbox once, nothing that was not listed, the first listed first.
  auto rs = job::envelope_recipients(req);
  FUZZ_CHECK(!rs.empty() && rs.size() <= listed, "envelope size");
  FUZZ_CHECK(rs.front().address == req.to.front().address, rs.front().address);
  for (std::size_t i = 0; i < rs.size(); ++i)
    for (std::size_t j = i + 1; j < rs.size(); ++j)
      FUZZ_CHECK(!job::same_mailbox(rs[i].address, rs[j].address), rs[i].address);
  for (const auto* list : {&req.to, &req.cc, &req.bcc})
    for (const auto& m : *list) {
      bool found = false;
      for (const auto& r : rs) found = found || job::same_mailbox(r.address, m.address);
      FUZZ_CHECK(found, m.address);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const job::Limits limits{50};

  // The strict parser against nlohmann's own: the same document whenever it accepts; where
  // nlohmann refuses (syntax, UTF-8), so does it.
  auto strict = job::parse_strict_json(body);
  auto loose = nlohmann::json::parse(body, nullptr, false);
  if (strict) {
    FUZZ_CHECK(!loose.is_discarded() && *strict == loose, "strict and loose parses differ");
  } else {
    check_error(strict.error());
    if (strict.error().code == "invalid_json") FUZZ_CHECK(loose.is_discarded(), "strict refused valid JSON");
  }

  // /mail/send
  auto req = job::parse_request(body, limits);
  if (req) {
    check_request(*req, limits);
  } else {
    check_error(req.error());
  }

  // /mail/batch: each entry of "jobs" validated on its own (the service adds the jobs[i] prefix).
  auto root = job::parse_json_object(body);
  if (!root) return 0;
  auto jobs = root->find("jobs");
  if (jobs == root->end() || !jobs->is_array()) return 0;
  std::size_t n = 0;
  for (const auto& entry : *jobs) {
    if (++n > 100) break;  // MAX_BATCH
    auto one = job::parse_job(entry, limits);
    if (one) {
      check_request(*one, limits);
    } else {
      check_error(one.error());
    }
  }
  return 0;
}
