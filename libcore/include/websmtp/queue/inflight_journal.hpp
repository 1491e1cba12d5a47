#pragma once
// Remembers, across a crash, which jobs had their message on the wire. A worker notes the
// job just before it sends the message data; if the process dies before that attempt's
// outcome is committed, the restart knows the peer may already have the message, so the
// retry is flagged `possible_duplicate` instead of being a silent second copy.
//
// Format: fixed 16-byte records (seq, attempts before the attempt), one after the other; a
// record with seq 0 (or the end of the file) ends them. The file is allocated ahead
// (fallocate, 1 MiB) and mapped shared, so noting an attempt is a store to memory, not a
// system call per message: the page cache holds it at once, so a kill -9 cannot lose it (like
// SQLite's WAL with synchronous=NORMAL). Where the space cannot be allocated (a full disk),
// records are appended with write(2) instead, whose failure only weakens duplicate flagging.
// Records whose outcome later committed are harmless: recovery checks the store. When the
// file is full it is rewritten with only the open records.
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace websmtp::queue {

class InflightJournal {
 public:
  struct Entry {
    std::int64_t seq = 0;
    std::int64_t attempts_before = 0;
  };

  // Opens (creating) the journal. Throws std::runtime_error when it cannot.
  explicit InflightJournal(std::string path);
  ~InflightJournal();
  InflightJournal(const InflightJournal&) = delete;
  InflightJournal& operator=(const InflightJournal&) = delete;

  // Records a previous run left behind (call once, before begin()).
  std::vector<Entry> recover();
  // Starts the file afresh: call once what recover() returned is safely in the store (a
  // start that fails before that keeps the records for the next one).
  void reset();
  void begin(std::int64_t seq, std::int64_t attempts_before);
  // The attempt's outcome is committed: the record is no longer needed. Ends are kept in
  // memory only (recovery checks the store), so they cost no write.
  void end(std::int64_t seq);

 private:
  void append(const Entry& e);
  void compact();
  // Opens `path` afresh (truncated) with its space allocated and mapped; false (and fd_ for
  // appends) when the space cannot be had.
  bool open_mapped(const std::string& path, int& fd, Entry*& map);
  void unmap();

  std::string path_;
  int fd_ = -1;
  Entry* map_ = nullptr;  // the mapped file, kCapacity records; null: appending with write(2)
  std::mutex mu_;
  std::unordered_map<std::int64_t, std::int64_t> open_;
  std::int64_t bytes_ = 0;
};

}  // namespace websmtp::queue
