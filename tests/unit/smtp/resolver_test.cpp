#include "websmtp/smtp/resolver.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "../../support/manual_clock.hpp"
#include "websmtp/smtp/mx_transport.hpp"
#include "websmtp/smtp/session_pool.hpp"

using namespace websmtp;
using namespace websmtp::smtp;
using websmtp::testing::ManualClock;

namespace {

// A DNS response built by hand: header, one question, answers and an optional SOA.
struct Packet {
  std::vector<unsigned char> b;
  void u16(int v) {
    b.push_back(static_cast<unsigned char>(v >> 8));
    b.push_back(static_cast<unsigned char>(v));
  }
  void u32(std::uint32_t v) {
    u16(static_cast<int>(v >> 16));
    u16(static_cast<int>(v & 0xFFFF));
  }
  void name(const std::string& n) {
    std::size_t start = 0;
    while (start < n.size()) {
      auto dot = n.find('.', start);
      if (dot == std::string::npos) dot = n.size();
      b.push_back(static_cast<unsigned char>(dot - start));
      b.insert(b.end(), n.begin() + static_cast<long>(start), n.begin() + static_cast<long>(dot));
      start = dot + 1;
    }
    b.push_back(0);
  }
};

Packet response(int rcode, const std::string& qname, int qtype, int answers, int authority) {
  Packet p;
  p.u16(0x1234);
  p.u16(0x8180 | rcode);
  p.u16(1);
  p.u16(answers);
  p.u16(authority);
  p.u16(0);
  p.name(qname);
  p.u16(qtype);
  p.u16(1);
  return p;
}

void mx_answer(Packet& p, int pref, const std::string& exchange, std::uint32_t ttl, bool compress_to_question) {
  p.u16(0xC00C);  // the question's name
  p.u16(15);
  p.u16(1);
  p.u32(ttl);
  Packet rdata;
  rdata.u16(pref);
  if (compress_to_question) {
    rdata.b.push_back(3);
    rdata.b.insert(rdata.b.end(), {'m', 'x', '1'});
    rdata.u16(0xC00C);
  } else {
    rdata.name(exchange);
  }
  p.u16(static_cast<int>(rdata.b.size()));
  p.b.insert(p.b.end(), rdata.b.begin(), rdata.b.end());
}

void soa_authority(Packet& p, std::uint32_t ttl, std::uint32_t minimum) {
  p.u16(0xC00C);
  p.u16(6);
  p.u16(1);
  p.u32(ttl);
  Packet rdata;
  rdata.name("ns.test");
  rdata.name("hostmaster.test");
  for (std::uint32_t v : {1u, 60u, 60u, 60u}) rdata.u32(v);
  rdata.u32(minimum);
  p.u16(static_cast<int>(rdata.b.size()));
  p.b.insert(p.b.end(), rdata.b.begin(), rdata.b.end());
}

}  // namespace

TEST(DnsResponse, ParsesMxRecordsWithCompressedNamesAndTheSmallestTtl) {
  auto p = response(0, "example.net", 15, 2, 0);
  mx_answer(p, 10, "", 300, true);
  mx_answer(p, 20, "mx2.Example.net", 120, false);
  auto a = parse_dns_response(p.b.data(), p.b.size(), DnsType::kMx);
  ASSERT_EQ(a.status, DnsStatus::kOk);
  ASSERT_EQ(a.mx.size(), 2u);
  EXPECT_EQ(a.mx[0], (MxRecord{10, "mx1.example.net"}));
  EXPECT_EQ(a.mx[1], (MxRecord{20, "mx2.example.net"}));
  EXPECT_EQ(a.ttl, 120u);
}

TEST(DnsResponse, NullMxIsAnEmptyExchange) {
  auto p = response(0, "example.net", 15, 1, 0);
  mx_answer(p, 0, "", 300, false);
  auto a = parse_dns_response(p.b.data(), p.b.size(), DnsType::kMx);
  ASSERT_EQ(a.mx.size(), 1u);
  EXPECT_EQ(a.mx[0], (MxRecord{0, ""}));
}

TEST(DnsResponse, NegativeAnswersTakeTheSoaTtl) {
  auto nx = response(3, "nowhere.example", 15, 0, 1);
  soa_authority(nx, 600, 90);
  auto a = parse_dns_response(nx.b.data(), nx.b.size(), DnsType::kMx);
  EXPECT_EQ(a.status, DnsStatus::kNxDomain);
  EXPECT_EQ(a.ttl, 90u);
  auto nodata = response(0, "example.net", 15, 0, 0);
  auto b = parse_dns_response(nodata.b.data(), nodata.b.size(), DnsType::kMx);
  EXPECT_EQ(b.status, DnsStatus::kOk);
  EXPECT_TRUE(b.mx.empty());
  EXPECT_EQ(b.ttl, 0u);  // no SOA: not cached
}

TEST(DnsResponse, ServfailIsTemporaryAndGarbageIsAnError) {
  auto p = response(2, "example.net", 15, 0, 0);
  EXPECT_EQ(parse_dns_response(p.b.data(), p.b.size(), DnsType::kMx).status, DnsStatus::kTempFail);
  unsigned char junk[5] = {1, 2, 3, 4, 5};
  EXPECT_EQ(parse_dns_response(junk, sizeof junk, DnsType::kMx).status, DnsStatus::kError);
  auto truncated = response(0, "example.net", 15, 1, 0);  // promises an answer it lacks
  EXPECT_EQ(parse_dns_response(truncated.b.data(), truncated.b.size(), DnsType::kMx).status, DnsStatus::kError);
}

TEST(MxOrder, SortsByPreferenceAndShufflesEqualOnes) {
  std::set<std::string> firsts;
  for (std::uint64_t seed = 0; seed < 64; ++seed) {
    std::vector<MxRecord> r = {{30, "c"}, {10, "a1"}, {20, "b"}, {10, "a2"}};
    std::mt19937_64 rng(seed);
    order_mx(r, rng);
    EXPECT_EQ(r[0].preference, 10);
    EXPECT_EQ(r[1].preference, 10);
    EXPECT_EQ(r[2].exchange, "b");
    EXPECT_EQ(r[3].exchange, "c");
    firsts.insert(r[0].exchange);
  }
  EXPECT_EQ(firsts, (std::set<std::string>{"a1", "a2"}));
}

TEST(MxRoute, ImplicitNullNxdomainAndTemporary) {
  std::mt19937_64 rng(1);
  DnsAnswer nodata;
  nodata.status = DnsStatus::kOk;
  auto implicit = route_from_mx_answer("example.net", nodata, rng);
  EXPECT_EQ(implicit.kind, MxRoute::Kind::kHosts);
  EXPECT_EQ(implicit.hosts, std::vector<std::string>{"example.net"});

  DnsAnswer null_mx = nodata;
  null_mx.mx = {{0, ""}};
  EXPECT_EQ(route_from_mx_answer("example.net", null_mx, rng).kind, MxRoute::Kind::kNullMx);

  DnsAnswer nx;
  nx.status = DnsStatus::kNxDomain;
  EXPECT_EQ(route_from_mx_answer("example.net", nx, rng).kind, MxRoute::Kind::kNoDomain);
  DnsAnswer servfail;
  servfail.status = DnsStatus::kTempFail;
  EXPECT_EQ(route_from_mx_answer("example.net", servfail, rng).kind, MxRoute::Kind::kTempFail);

  DnsAnswer two = nodata;
  two.mx = {{20, "mx2.example.net"}, {10, "mx1.example.net"}, {20, "mx2.example.net"}};
  EXPECT_EQ(route_from_mx_answer("example.net", two, rng).hosts,
            (std::vector<std::string>{"mx1.example.net", "mx2.example.net"}));
}

namespace {
class FakeDns final : public DnsClient {
 public:
  std::atomic<int> queries{0};
  DnsStatus status = DnsStatus::kOk;
  DnsAnswer query(const std::string& name, DnsType type) override {
    ++queries;
    DnsAnswer a;
    a.status = status;
    a.ttl = 60;
    if (type == DnsType::kMx) a.mx = {{10, "mx." + name}};
    if (type == DnsType::kA) a.addresses = {"127.0.0.2"};
    return a;
  }
};
}  // namespace

TEST(MxResolverCache, HonoursTheTtlAndNeverCachesFailures) {
  auto dns = std::make_shared<FakeDns>();
  ManualClock clock;
  MxResolver r(dns, clock);
  EXPECT_EQ(r.route("example.net").hosts, std::vector<std::string>{"mx.example.net"});
  r.route("EXAMPLE.net");
  EXPECT_EQ(dns->queries, 1);
  clock.advance_ms(59'000);
  r.route("example.net");
  EXPECT_EQ(dns->queries, 1);
  clock.advance_ms(1'000);
  r.route("example.net");
  EXPECT_EQ(dns->queries, 2);

  dns->status = DnsStatus::kTempFail;
  EXPECT_EQ(r.route("other.example").kind, MxRoute::Kind::kTempFail);
  EXPECT_EQ(r.route("other.example").kind, MxRoute::Kind::kTempFail);
  EXPECT_EQ(dns->queries, 4);
}

TEST(Idn, DomainsBecomeLowerCaseALabels) {
  EXPECT_EQ(to_ascii_domain("Example.NET"), "example.net");
  EXPECT_EQ(to_ascii_domain("bücher.example"), "xn--bcher-kva.example");
  EXPECT_FALSE(to_ascii_domain(""));
}

TEST(MxFallback, NextHostFor4xxOrNoAnswerUnlessTheMessageMayHaveArrived) {
  EXPECT_TRUE(retry_at_next_mx(Reply{0, "connection refused"}));
  EXPECT_TRUE(retry_at_next_mx(Reply{421, "greeting: 421 busy"}));
  EXPECT_TRUE(retry_at_next_mx(Reply{451, "4.7.1 greylisted"}));
  EXPECT_TRUE(retry_at_next_mx(Reply{452, "DATA: 452 later"}));
  EXPECT_FALSE(retry_at_next_mx(Reply{250, "ok"}));
  EXPECT_FALSE(retry_at_next_mx(Reply{550, "5.1.1 unknown"}));
  EXPECT_FALSE(retry_at_next_mx(Reply{0, "lost reply to the dot", true}));
  Reply unsent{0, "5.6.7 needs SMTPUTF8"};
  unsent.permanent = true;
  EXPECT_FALSE(retry_at_next_mx(unsent));
}

TEST(SessionPool, CapsSessionsPerHostAndKeepsOnlyUsableOnes) {
  SessionPool pool(SessionOptions{}, PoolLimits{2, 8, std::chrono::milliseconds(30'000)});
  SessionKey a{"127.0.0.2", 25, TlsMode::kNone};
  auto s1 = pool.acquire(a, std::chrono::milliseconds(0));
  auto s2 = pool.acquire(a, std::chrono::milliseconds(0));
  ASSERT_TRUE(s1 && s2);
  EXPECT_EQ(pool.acquire(a, std::chrono::milliseconds(0)), nullptr);  // two to that host already
  EXPECT_NE(pool.acquire(SessionKey{"127.0.0.3", 25, TlsMode::kNone}, std::chrono::milliseconds(0)), nullptr);
  pool.release(a, std::move(s1));  // never connected: not worth keeping, and its slot is free
  EXPECT_EQ(pool.idle(), 0);
  EXPECT_NE(pool.acquire(a, std::chrono::milliseconds(0)), nullptr);
}

// Workers share the resolver and the pool: many threads at once (run under TSan).
TEST(SessionPool, SharedByManyWorkersWithinTheBounds) {
  SessionPool pool(SessionOptions{}, PoolLimits{2, 8, std::chrono::milliseconds(30'000)});
  auto dns = std::make_shared<FakeDns>();
  ManualClock clock;
  MxResolver resolver(dns, clock);
  std::atomic<int> most{0}, now{0}, misses{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        // (std::string(...) + ...: "literal" + std::to_string(...) trips GCC 12's -Wrestrict false positive)
        EXPECT_EQ(resolver.route(std::string("d") + std::to_string(i % 7) + ".example").kind, MxRoute::Kind::kHosts);
        SessionKey key{std::string("127.0.0.") + std::to_string(2 + (t + i) % 2), 25, TlsMode::kNone};
        auto s = pool.acquire(key, std::chrono::milliseconds(1000));
        if (!s) {
          ++misses;
          continue;
        }
        int n = ++now;
        int m = most.load();
        while (n > m && !most.compare_exchange_weak(m, n)) {
        }
        --now;
        pool.release(key, std::move(s));
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_LE(most.load(), 4);  // two hosts, two sessions each
  EXPECT_EQ(misses.load(), 0);
  EXPECT_EQ(pool.in_use(), 0);
}
