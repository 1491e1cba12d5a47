#pragma once
// Suppressed recipients (admin API): an address on the list fails at once with reason
// `suppressed`, without an SMTP attempt; a permanent reject of the mailbox (5xx with an
// enhanced status 5.1.x) puts it there. The list lives in the store; a copy in memory makes the
// check on every recipient of every attempt a hash lookup (none at all while it is empty).
//
// DECISION: an address is compared as a whole in lower case (local part too). Domains are
// case-insensitive by definition; local parts may in theory be case-sensitive, but no mail
// system in use treats Bob@ and bob@ as two people, and a suppression errs on the side of not
// sending to someone who bounced or asked not to get mail.
// DECISION: the domain is kept as its A-labels (common/idn.hpp), so bob@bücher.example,
// bob@BÜCHER.example and bob@xn--bcher-kva.example are one entry, stored, listed and matched
// in that form. Rows stored before that are rewritten in it when the list is loaded.
#include <atomic>
#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "websmtp/common/error.hpp"
#include "websmtp/store/store.hpp"

namespace websmtp::service {

class Suppressions {
 public:
  // Loads the list (throws StoreError when the store cannot be read).
  explicit Suppressions(store::Store& store);

  // The one form of a mailbox: local part lower-cased (ASCII letters), domain as lower-case
  // A-labels.
  static std::string normalize(std::string_view address);
  // A 5xx whose enhanced status (RFC 3463) is 5.1.x: the mailbox itself is refused (but for
  // 5.1.7 and 5.1.8, which refuse the sender's address).
  static bool is_mailbox_reject(int smtp_code, std::string_view smtp_reply);

  bool contains(std::string_view address) const;

  Result<std::vector<store::SuppressionRecord>> list();
  struct Added {
    store::SuppressionRecord entry;  // as stored: the new entry, or the one already there
    bool fresh = false;              // whether it is new
  };
  // Adds a manual suppression. kInvalid for an address that is not one.
  Result<Added> add(std::string_view address, std::int64_t now_s);
  // kNotFound when the address is not suppressed.
  Result<bool> remove(std::string_view address);
  // A permanent reject of the mailbox: from now on the address is suppressed. Returns the
  // record to write with the attempt's outcome when the address was not suppressed yet.
  std::optional<store::SuppressionRecord> bounced(std::string_view address, int smtp_code, std::string_view smtp_reply,
                                                  std::int64_t now_s);

 private:
  store::Store& store_;
  mutable std::shared_mutex mu_;
  std::unordered_set<std::string> set_;
  std::atomic<std::size_t> size_{0};
};

}  // namespace websmtp::service
