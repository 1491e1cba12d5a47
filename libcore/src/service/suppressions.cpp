#include "websmtp/service/suppressions.hpp"

#include <mutex>

#include "websmtp/common/idn.hpp"
#include "websmtp/common/text.hpp"
#include "websmtp/job/validation.hpp"

namespace websmtp::service {

namespace {
Error unavailable() {
  return Error{ErrorKind::kUnavailable, "store_unavailable", "the store cannot be read or written; retry shortly", ""};
}
}  // namespace

Suppressions::Suppressions(store::Store& store) : store_(store) {
  for (auto& s : store_.list_suppressions()) {
    std::string key = normalize(s.address);
    if (key != s.address) {
      // A row written before domains were stored as A-labels: rewrite it in the one form (an
      // entry already there under that form wins, as for any second suppression of a mailbox).
      std::string old = std::move(s.address);
      s.address = key;
      store_.add_suppression(s);
      store_.remove_suppression(old);
    }
    set_.insert(std::move(key));
  }
  size_ = set_.size();
}

std::string Suppressions::normalize(std::string_view address) {
  std::size_t at = address.rfind('@');
  std::string local(address.substr(0, at == std::string_view::npos ? address.size() : at));
  for (char& c : local) c = ascii_lower(c);
  if (at == std::string_view::npos) return local;
  std::string_view domain = address.substr(at + 1);
  auto ascii = to_ascii_domain(domain);
  std::string out = std::move(local);
  out += '@';
  if (ascii) {
    out += *ascii;
  } else {  // not convertible (it never passed validation): lower-cased as given
    for (char c : domain) out += ascii_lower(c);
  }
  return out;
}

bool Suppressions::is_mailbox_reject(int smtp_code, std::string_view reply) {
  if (smtp_code < 500 || smtp_code > 599) return false;
  while (!reply.empty() && reply.front() == ' ') reply.remove_prefix(1);
  if (reply.substr(0, 4) != "5.1.") return false;
  std::size_t end = 4;
  int detail = 0;
  while (end < reply.size() && end < 7 && reply[end] >= '0' && reply[end] <= '9') detail = detail * 10 + (reply[end++] - '0');
  if (end == 4 || (end < reply.size() && reply[end] != ' ')) return false;
  // X.1.7 and X.1.8 (RFC 3463) are about the sender's address, not the recipient's mailbox.
  return detail != 7 && detail != 8;
}

bool Suppressions::contains(std::string_view address) const {
  if (size_.load(std::memory_order_relaxed) == 0) return false;
  std::string key = normalize(address);
  std::shared_lock lock(mu_);
  return set_.count(key) > 0;
}

Result<std::vector<store::SuppressionRecord>> Suppressions::list() {
  try {
    return store_.list_suppressions();
  } catch (const store::StoreError&) {
    return tl::unexpected(unavailable());
  }
}

Result<Suppressions::Added> Suppressions::add(std::string_view address, std::int64_t now_s) {
  if (!job::is_valid_address(address))
    return fail(ErrorKind::kInvalid, "invalid_address", "not an email address (local@domain)", "address");
  Added added{{normalize(address), "manual", now_s, 0, {}}, false};
  try {
    added.fresh = store_.add_suppression(added.entry);
    if (!added.fresh) {  // the entry already there is the answer, unchanged (a bounce stays a bounce)
      for (auto& s : store_.list_suppressions())
        if (s.address == added.entry.address) added.entry = std::move(s);
    }
  } catch (const store::StoreError&) {
    return tl::unexpected(unavailable());
  }
  std::unique_lock lock(mu_);
  set_.insert(added.entry.address);
  size_ = set_.size();
  return added;
}

Result<bool> Suppressions::remove(std::string_view address) {
  std::string key = normalize(address);
  bool removed;
  try {
    removed = store_.remove_suppression(key);
  } catch (const store::StoreError&) {
    return tl::unexpected(unavailable());
  }
  {
    std::unique_lock lock(mu_);
    removed = set_.erase(key) > 0 || removed;
    size_ = set_.size();
  }
  if (!removed) return fail(ErrorKind::kNotFound, "not_suppressed", "this address is not suppressed", "address");
  return true;
}

std::optional<store::SuppressionRecord> Suppressions::bounced(std::string_view address, int smtp_code,
                                                              std::string_view smtp_reply, std::int64_t now_s) {
  std::string key = normalize(address);
  {
    std::unique_lock lock(mu_);
    if (!set_.insert(key).second) return std::nullopt;
    size_ = set_.size();
  }
  return store::SuppressionRecord{std::move(key), "bounce", now_s, smtp_code, std::string(smtp_reply)};
}

}  // namespace websmtp::service
