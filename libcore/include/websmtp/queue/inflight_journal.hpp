#pragma once
// Remembers, across a crash, which jobs had their message on the wire. A worker notes the
// job just before it sends the message data; if the process dies before that attempt's
// outcome is committed, the restart knows the peer may already have the message, so the
// retry is flagged `possible_duplicate` instead of being a silent second copy.
//
// Format: fixed 16-byte records (seq, attempts before the attempt) appended with write(2):
// in the page cache at once, so a kill -9 cannot lose them (like SQLite's WAL with
// synchronous=NORMAL). Records whose outcome later committed are harmless: recovery checks
// the store. The file is rewritten with only the open records when it grows past 1 MiB.
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

  std::string path_;
  int fd_ = -1;
  std::mutex mu_;
  std::unordered_map<std::int64_t, std::int64_t> open_;
  std::int64_t bytes_ = 0;
};

}  // namespace websmtp::queue
