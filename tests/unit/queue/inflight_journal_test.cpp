#include <gtest/gtest.h>

#include <filesystem>

#include "../../support/temp_dir.hpp"
#include "websmtp/queue/inflight_journal.hpp"

using websmtp::queue::InflightJournal;

TEST(InflightJournal, RecoversWhatTheLastRunLeft) {
  websmtp::test_support::TempDir dir;
  {
    InflightJournal j(dir.file("j"));
    EXPECT_TRUE(j.recover().empty());
    j.begin(7, 0);
    j.begin(8, 2);
    j.end(7);  // ends are in memory only: recovery checks the store for those
  }
  InflightJournal j(dir.file("j"));
  auto entries = j.recover();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].seq, 7);
  EXPECT_EQ(entries[1].seq, 8);
  EXPECT_EQ(entries[1].attempts_before, 2);
  EXPECT_EQ(j.recover().size(), 2u);  // kept until reset(): a failed start must not lose them
  j.reset();
  EXPECT_TRUE(j.recover().empty());
}

TEST(InflightJournal, CompactsToTheOpenRecords) {
  websmtp::test_support::TempDir dir;
  InflightJournal j(dir.file("j"));
  j.recover();
  for (std::int64_t seq = 1; seq <= 100'000; ++seq) {
    j.begin(seq, 0);
    if (seq != 5) j.end(seq);
  }
  EXPECT_LT(std::filesystem::file_size(dir.file("j")), 1u << 21);  // bounded, not 1.6 MB and growing
  InflightJournal again(dir.file("j"));
  bool found5 = false;
  for (const auto& e : again.recover()) found5 |= e.seq == 5;
  EXPECT_TRUE(found5);
}

// After reset() the journal is a mapped, preallocated file: records are memory stores that a
// later open reads back (a kill -9 leaves them in the page cache), compaction keeps the open
// ones, and the file's size stays fixed.
TEST(InflightJournal, MappedRecordsSurviveAndCompact) {
  websmtp::test_support::TempDir dir;
  {
    InflightJournal j(dir.file("j"));
    j.recover();
    j.reset();
    for (std::int64_t seq = 1; seq <= 200'000; ++seq) {
      j.begin(seq, seq % 3);
      if (seq != 42 && seq != 199'999) j.end(seq);
    }
    EXPECT_EQ(std::filesystem::file_size(dir.file("j")), 1u << 20);
  }
  InflightJournal again(dir.file("j"));
  auto entries = again.recover();
  bool found42 = false, found_last = false, found_end = false;
  for (const auto& e : entries) {
    found42 |= e.seq == 42 && e.attempts_before == 0;
    found_last |= e.seq == 199'999 && e.attempts_before == 199'999 % 3;
    found_end |= e.seq == 200'000;
    EXPECT_GT(e.seq, 0);
  }
  EXPECT_TRUE(found42);
  EXPECT_TRUE(found_last);
  EXPECT_TRUE(found_end);  // its end() was in memory only
  EXPECT_LT(entries.size(), 70'000u);
  again.reset();
  EXPECT_TRUE(again.recover().empty());
}
