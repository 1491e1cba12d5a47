// The envelope built from a validated request: each mailbox once.
#include <gtest/gtest.h>

#include "websmtp/job/envelope.hpp"
#include "websmtp/job/validation.hpp"

using namespace websmtp;
using namespace websmtp::job;

namespace {

MailRequest request(const std::string& body) {
  auto r = parse_request(body, Limits{});
  EXPECT_TRUE(r) << (r ? "" : r.error().message);
  return r ? std::move(*r) : MailRequest{};
}

std::vector<std::pair<std::string, std::string>> summary(const std::vector<Recipient>& rs) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& r : rs) out.emplace_back(r.address, to_string(r.kind));
  return out;
}

using Pairs = std::vector<std::pair<std::string, std::string>>;

// "u<i>@<domain>" (built with +=: GCC 12 warns falsely on "u" + std::to_string(i), PR 105329).
std::string user(int i, const char* domain) {
  std::string s = "u";
  s += std::to_string(i);
  s += '@';
  s += domain;
  return s;
}

}  // namespace

TEST(Envelope, SameMailboxComparesTheDomainWithoutCase) {
  EXPECT_TRUE(same_mailbox("bob@example.net", "bob@EXAMPLE.Net"));
  EXPECT_FALSE(same_mailbox("bob@example.net", "Bob@example.net"));  // the local part is the host's business
  EXPECT_FALSE(same_mailbox("bob@example.net", "bob@example.ne"));
  EXPECT_FALSE(same_mailbox("a@b@example.net", "a@B@example.net"));  // split at the last '@'
  EXPECT_TRUE(same_mailbox("\"a@b\"@Example.net", "\"a@b\"@example.NET"));
}

TEST(Envelope, SameMailboxComparesAnInternationalisedDomainByItsALabels) {
  EXPECT_TRUE(same_mailbox("bob@bücher.example", "bob@xn--bcher-kva.example"));
  EXPECT_TRUE(same_mailbox("bob@BÜCHER.example", "bob@bücher.example"));
  EXPECT_TRUE(same_mailbox("bob@xn--BCHER-kva.example", "bob@Bücher.example"));
  EXPECT_FALSE(same_mailbox("Bob@bücher.example", "bob@xn--bcher-kva.example"));
  EXPECT_FALSE(same_mailbox("bob@bücher.example", "bob@bucher.example"));
}

TEST(Envelope, AnInternationalisedDomainInTwoSpellingsIsOneRecipient) {
  auto req = request(R"({"from":"a@b.cc","to":["u@bücher.example"],"cc":["u@xn--bcher-kva.example"],)"
                     R"("bcc":["u@BÜCHER.example","v@bücher.example"],"subject":"","body":""})");
  EXPECT_EQ(summary(envelope_recipients(req)), (Pairs{{"u@bücher.example", "to"}, {"v@bücher.example", "bcc"}}));
  // The hashed path of long lists agrees.
  MailRequest many;
  for (int i = 0; i < 40; ++i) many.to.push_back({"", user(i, "bücher.example")});
  for (int i = 0; i < 40; ++i) many.bcc.push_back({"", user(i, "XN--bcher-kva.example")});
  EXPECT_EQ(envelope_recipients(many).size(), 40u);
}

TEST(Envelope, KeepsEveryDistinctRecipientInToCcBccOrder) {
  auto req = request(R"({"from":"a@b.cc","to":["t@x.zz"],"cc":["c@x.zz"],"bcc":["b@x.zz"],"subject":"","body":""})");
  EXPECT_EQ(summary(envelope_recipients(req)), (Pairs{{"t@x.zz", "to"}, {"c@x.zz", "cc"}, {"b@x.zz", "bcc"}}));
}

TEST(Envelope, ListsARepeatedAddressOnceAsItsFirstOccurrence) {
  auto req = request(R"({"from":"a@b.cc","subject":"","body":"",
      "to":["Bob <bob@Example.net>","x@y.zz","bob@example.net"],
      "cc":["x@Y.ZZ","carol@example.com","Bob@example.net"],
      "bcc":["carol@EXAMPLE.com","bob@example.NET","d@y.zz"]})");
  EXPECT_EQ(summary(envelope_recipients(req)), (Pairs{{"bob@Example.net", "to"},
                                                      {"x@y.zz", "to"},
                                                      {"carol@example.com", "cc"},
                                                      {"Bob@example.net", "cc"},
                                                      {"d@y.zz", "bcc"}}));
  // The headers show what the client wrote.
  EXPECT_EQ(req.to.size(), 3u);
  EXPECT_EQ(req.cc.size(), 3u);
}

TEST(Envelope, AnAddressInToAndBccIsAToRecipient) {
  auto req = request(R"({"from":"a@b.cc","to":["x@y.zz"],"bcc":["X@y.zz","x@Y.zz"],"subject":"","body":""})");
  EXPECT_EQ(summary(envelope_recipients(req)), (Pairs{{"x@y.zz", "to"}, {"X@y.zz", "bcc"}}));
}

TEST(Envelope, LongListsAreDeduplicatedTheSameWay) {
  // Past the pairwise scan's size the hashed path must give the same answer.
  MailRequest req;
  for (int i = 0; i < 500; ++i) req.to.push_back({"", user(i % 200, "Example.org")});
  for (int i = 0; i < 500; ++i) req.bcc.push_back({"", user(i, "example.ORG")});
  auto rs = envelope_recipients(req);
  ASSERT_EQ(rs.size(), 500u);
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(rs[i].address, user(i, "Example.org"));
    EXPECT_EQ(rs[i].kind, RecipientKind::kTo);
  }
  for (int i = 200; i < 500; ++i) {
    EXPECT_EQ(rs[i].address, user(i, "example.ORG"));
    EXPECT_EQ(rs[i].kind, RecipientKind::kBcc);
  }
}
