#pragma once
// A bounded LRU cache of job statuses in front of the store, so polling clients cost no
// SQLite read. Entries of finished jobs expire with their STATUS_TTL.
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "websmtp/job/model.hpp"

namespace websmtp::service {

class StatusCache {
 public:
  explicit StatusCache(std::size_t capacity) : capacity_(capacity) {}

  // The cached job (without message) unless absent or expired at now_ms.
  std::optional<job::Job> get(const std::string& ref, std::int64_t now_ms);
  void put(const job::Job& job, std::int64_t expires_ms);
  // Refreshes an entry only if cached: outcomes of jobs nobody asked about stay out.
  void update_if_present(const std::string& ref, const std::vector<job::Recipient>& recipients, bool started,
                         std::int64_t completed, std::int64_t expires_ms);
  std::size_t size() const;

 private:
  struct Entry {
    job::Job job;
    std::int64_t expires_ms;
    std::list<std::string>::iterator lru;
  };
  void touch(Entry& e);

  std::size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
  std::list<std::string> lru_;  // front: most recent
};

}  // namespace websmtp::service
