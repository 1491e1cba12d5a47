#pragma once
// A bounded LRU cache of job statuses in front of the store, so polling clients cost no
// SQLite read. Entries of finished jobs expire with their STATUS_TTL.
#include <cstdint>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "websmtp/job/model.hpp"

namespace websmtp::service {

class StatusCache {
 public:
  explicit StatusCache(std::size_t capacity) : capacity_(capacity) {}

  // The cached job (without message) unless absent or expired at now_ms.
  std::optional<job::Job> get(const std::string& ref, std::int64_t now_ms);
  // A token to take before reading a job from the store, for put().
  std::uint64_t generation(const std::string& ref) const;
  // Caches a job read from the store, unless an outcome for it was committed since the
  // `generation` token was taken (the read may predate it; caching it would go stale).
  void put(const job::Job& job, std::int64_t expires_ms, std::uint64_t generation);
  // Records a committed outcome; refreshes the entry only if cached (outcomes of jobs nobody
  // asked about stay out).
  void update_if_present(const std::string& ref, const std::vector<job::Recipient>& recipients, bool started,
                         std::int64_t completed, std::int64_t expires_ms);
  std::size_t size() const;
  // Another node changed the job (a shared store): the entry is dropped, and a read under way
  // is not cached.
  void invalidate(const std::string& ref);
  void invalidate_all();

 private:
  struct Entry {
    job::Job job;
    std::int64_t expires_ms;
    std::list<std::string>::iterator lru;
  };
  void touch(Entry& e);
  std::size_t stripe(const std::string& ref) const { return std::hash<std::string>{}(ref) % kStripes; }

  static constexpr std::size_t kStripes = 1024;
  std::size_t capacity_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
  std::list<std::string> lru_;  // front: most recent
  std::vector<std::uint64_t> generations_ = std::vector<std::uint64_t>(kStripes, 0);
};

}  // namespace websmtp::service
