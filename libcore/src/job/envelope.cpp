#include "websmtp/job/envelope.hpp"

#include <unordered_set>

#include "websmtp/common/idn.hpp"
#include "websmtp/common/text.hpp"

namespace websmtp::job {

namespace {

// Below this many recipients a pairwise comparison beats hashing (and allocates nothing).
constexpr std::size_t kLinearScanMax = 16;

std::size_t domain_at(std::string_view address) {
  auto at = address.rfind('@');
  return at == std::string_view::npos ? address.size() : at;
}

// local@domain with the domain lowercased, and in A-labels when it is internationalised:
// equal keys for same_mailbox() addresses.
std::string mailbox_key(std::string_view address) {
  const std::size_t at = domain_at(address);
  if (at < address.size() && has_non_ascii(address.substr(at + 1))) return ascii_domain_address(address);
  std::string key(address);
  for (std::size_t i = at; i < key.size(); ++i) key[i] = ascii_lower(key[i]);
  return key;
}

}  // namespace

bool same_mailbox(std::string_view a, std::string_view b) {
  std::size_t at = domain_at(a);
  if (at < a.size() && at == domain_at(b) && (has_non_ascii(a.substr(at)) || has_non_ascii(b.substr(at))))
    return a.substr(0, at) == b.substr(0, at) && mailbox_key(a) == mailbox_key(b);  // U-labels: by their A-labels
  if (a.size() != b.size()) return false;
  if (at != domain_at(b)) return false;
  return a.substr(0, at) == b.substr(0, at) && iequals(a.substr(at), b.substr(at));
}

std::vector<Recipient> envelope_recipients(const MailRequest& req) {
  const std::size_t listed = req.to.size() + req.cc.size() + req.bcc.size();
  std::vector<Recipient> out;
  out.reserve(listed);
  std::unordered_set<std::string> seen;
  if (listed > kLinearScanMax) seen.reserve(listed);
  auto is_new = [&](const std::string& address) {
    if (listed > kLinearScanMax) return seen.insert(mailbox_key(address)).second;
    for (const auto& r : out)
      if (same_mailbox(r.address, address)) return false;
    return true;
  };
  auto add = [&](const std::vector<Mailbox>& list, RecipientKind kind) {
    for (const auto& m : list) {
      if (!is_new(m.address)) continue;
      Recipient r;
      r.address = m.address;
      r.kind = kind;
      out.push_back(std::move(r));
    }
  };
  add(req.to, RecipientKind::kTo);
  add(req.cc, RecipientKind::kCc);
  add(req.bcc, RecipientKind::kBcc);
  return out;
}

}  // namespace websmtp::job
