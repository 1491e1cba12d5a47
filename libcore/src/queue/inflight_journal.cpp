#include "websmtp/queue/inflight_journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace websmtp::queue {

namespace {
constexpr std::int64_t kCompactBytes = 1 << 20;

int open_append(const std::string& path, bool truncate) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0600);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  return fd;
}

bool write_all(int fd, const void* data, std::size_t n) {
  auto* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}
}  // namespace

InflightJournal::InflightJournal(std::string path) : path_(std::move(path)) { fd_ = open_append(path_, false); }

InflightJournal::~InflightJournal() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<InflightJournal::Entry> InflightJournal::recover() {
  std::lock_guard lock(mu_);
  std::vector<Entry> out;
  int rfd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (rfd >= 0) {
    Entry e;
    while (::read(rfd, &e, sizeof e) == static_cast<ssize_t>(sizeof e)) out.push_back(e);  // a torn tail is dropped
    ::close(rfd);
  }
  return out;
}

void InflightJournal::reset() {
  std::lock_guard lock(mu_);
  ::close(fd_);
  fd_ = open_append(path_, true);
  bytes_ = 0;
}

void InflightJournal::begin(std::int64_t seq, std::int64_t attempts_before) {
  std::lock_guard lock(mu_);
  // An earlier attempt of the job whose outcome is not committed yet (handed back for its
  // retry while the store was failing) keeps its record: it is the one that matches the
  // store after a crash, so compaction must not drop it.
  open_.try_emplace(seq, attempts_before);
  append(Entry{seq, attempts_before});
  if (bytes_ > kCompactBytes) compact();
}

void InflightJournal::end(std::int64_t seq) {
  std::lock_guard lock(mu_);
  open_.erase(seq);
}

void InflightJournal::append(const Entry& e) {
  // A failed write only weakens duplicate flagging after a crash; delivery goes on.
  if (write_all(fd_, &e, sizeof e)) bytes_ += static_cast<std::int64_t>(sizeof e);
}

void InflightJournal::compact() {
  std::string tmp = path_ + ".tmp";
  int fd = open_append(tmp, true);
  std::vector<Entry> entries;
  entries.reserve(open_.size());
  for (const auto& [seq, attempts] : open_) entries.push_back({seq, attempts});
  bool ok = entries.empty() || write_all(fd, entries.data(), entries.size() * sizeof(Entry));
  if (ok && ::rename(tmp.c_str(), path_.c_str()) == 0) {
    ::close(fd_);
    fd_ = fd;
    bytes_ = static_cast<std::int64_t>(entries.size() * sizeof(Entry));
  } else {
    ::close(fd);
    ::unlink(tmp.c_str());
  }
}

}  // namespace websmtp::queue
