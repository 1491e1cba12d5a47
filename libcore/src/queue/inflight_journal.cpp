#include "websmtp/queue/inflight_journal.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace websmtp::queue {

namespace {
constexpr std::int64_t kCompactBytes = 1 << 20;
constexpr std::size_t kCapacity = kCompactBytes / sizeof(InflightJournal::Entry);

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
  unmap();
  if (fd_ >= 0) ::close(fd_);
}

void InflightJournal::unmap() {
  if (map_) ::munmap(map_, kCapacity * sizeof(Entry));
  map_ = nullptr;
}

bool InflightJournal::open_mapped(const std::string& path, int& fd, Entry*& map) {
  map = nullptr;
  fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  // Allocated, not sparse: a store into a hole the disk cannot back would be SIGBUS.
  if (::posix_fallocate(fd, 0, static_cast<off_t>(kCapacity * sizeof(Entry))) != 0) return false;
  void* p = ::mmap(nullptr, kCapacity * sizeof(Entry), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return false;
  map = static_cast<Entry*>(p);
  return true;
}

std::vector<InflightJournal::Entry> InflightJournal::recover() {
  std::lock_guard lock(mu_);
  std::vector<Entry> out;
  int rfd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (rfd >= 0) {
    Entry e;
    // A torn tail is dropped; a zero record is where a mapped file's records end.
    while (::read(rfd, &e, sizeof e) == static_cast<ssize_t>(sizeof e) && e.seq != 0) out.push_back(e);
    ::close(rfd);
  }
  return out;
}

void InflightJournal::reset() {
  std::lock_guard lock(mu_);
  unmap();
  ::close(fd_);
  int fd = -1;
  Entry* map = nullptr;
  if (open_mapped(path_, fd, map)) {
    fd_ = fd;
    map_ = map;
  } else {
    if (fd >= 0) ::close(fd);
    fd_ = open_append(path_, true);
  }
  bytes_ = 0;
}

void InflightJournal::begin(std::int64_t seq, std::int64_t attempts_before) {
  std::lock_guard lock(mu_);
  // An earlier attempt of the job whose outcome is not committed yet (handed back for its
  // retry while the store was failing) keeps its record: it is the one that matches the
  // store after a crash, so compaction must not drop it.
  open_.try_emplace(seq, attempts_before);
  if (map_ && bytes_ >= kCompactBytes) compact();  // full: rewrite first, then there is room
  append(Entry{seq, attempts_before});
  if (!map_ && bytes_ > kCompactBytes) compact();
}

void InflightJournal::end(std::int64_t seq) {
  std::lock_guard lock(mu_);
  open_.erase(seq);
}

void InflightJournal::append(const Entry& e) {
  if (map_) {
    if (static_cast<std::size_t>(bytes_) / sizeof(Entry) >= kCapacity) return;  // full and not compacted
    // attempts_before first, seq last: a record is never seen (seq != 0) before it is whole.
    Entry& slot = map_[static_cast<std::size_t>(bytes_) / sizeof(Entry)];
    slot.attempts_before = e.attempts_before;
    std::atomic_signal_fence(std::memory_order_release);
    slot.seq = e.seq;
    bytes_ += static_cast<std::int64_t>(sizeof e);
    return;
  }
  // A failed write only weakens duplicate flagging after a crash; delivery goes on.
  if (write_all(fd_, &e, sizeof e)) bytes_ += static_cast<std::int64_t>(sizeof e);
}

void InflightJournal::compact() {
  std::string tmp = path_ + ".tmp";
  std::vector<Entry> entries;
  entries.reserve(open_.size());
  for (const auto& [seq, attempts] : open_) entries.push_back({seq, attempts});
  int fd = -1;
  Entry* map = nullptr;
  if (entries.size() < kCapacity && open_mapped(tmp, fd, map)) {
    std::copy(entries.begin(), entries.end(), map);
    if (::rename(tmp.c_str(), path_.c_str()) == 0) {
      unmap();
      ::close(fd_);
      fd_ = fd;
      map_ = map;
      bytes_ = static_cast<std::int64_t>(entries.size() * sizeof(Entry));
      return;
    }
    ::munmap(map, kCapacity * sizeof(Entry));
  }
  if (fd >= 0) ::close(fd);
  // No space for a mapped file: append with write(2) from here on.
  fd = open_append(tmp, true);
  bool ok = entries.empty() || write_all(fd, entries.data(), entries.size() * sizeof(Entry));
  if (ok && ::rename(tmp.c_str(), path_.c_str()) == 0) {
    unmap();
    ::close(fd_);
    fd_ = fd;
    bytes_ = static_cast<std::int64_t>(entries.size() * sizeof(Entry));
  } else {
    ::close(fd);
    ::unlink(tmp.c_str());
  }
}

}  // namespace websmtp::queue
