#include "websmtp/dns/spf.hpp"

#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <map>

#include "websmtp/dns/domain_check.hpp"

using namespace websmtp;
using namespace websmtp::dns;
using smtp::DnsAnswer;
using smtp::DnsStatus;
using smtp::DnsType;

namespace {

// A zone in memory: a name not in it is NXDOMAIN, a name without the asked type NODATA.
class FakeDns final : public smtp::DnsClient {
 public:
  void txt(const std::string& name, std::vector<std::string> records) { node(name).txt = std::move(records); }
  void a(const std::string& name, std::vector<std::string> ips) { node(name).a = std::move(ips); }
  void aaaa(const std::string& name, std::vector<std::string> ips) { node(name).aaaa = std::move(ips); }
  void mx(const std::string& name, std::vector<smtp::MxRecord> records) { node(name).mx = std::move(records); }
  void servfail(const std::string& name) { node(name).servfail = true; }
  int queries = 0;

  DnsAnswer query(const std::string& name, DnsType type) override {
    ++queries;
    DnsAnswer out;
    auto it = zone_.find(name);
    if (it == zone_.end()) {
      out.status = DnsStatus::kNxDomain;
      return out;
    }
    if (it->second.servfail) {
      out.status = DnsStatus::kTempFail;
      out.detail = "SERVFAIL";
      return out;
    }
    out.status = DnsStatus::kOk;
    switch (type) {
      case DnsType::kTxt:
        out.txt = it->second.txt;
        break;
      case DnsType::kA:
        out.addresses = it->second.a;
        break;
      case DnsType::kAaaa:
        out.addresses = it->second.aaaa;
        break;
      case DnsType::kMx:
        out.mx = it->second.mx;
        break;
    }
    return out;
  }

 private:
  struct Node {
    std::vector<std::string> txt, a, aaaa;
    std::vector<smtp::MxRecord> mx;
    bool servfail = false;
  };
  Node& node(const std::string& name) { return zone_[name]; }
  std::map<std::string, Node> zone_;
};

SpfCheck check(FakeDns& dns, const std::string& ip, const std::string& domain = "example.org") {
  return check_spf(dns, SpfRequest{ip, domain, "", "gw.example.org"});
}

}  // namespace

TEST(Spf, PassesForAnAddressInAnIp4Range) {
  FakeDns dns;
  dns.txt("example.org", {"some other text", "v=spf1 ip4:192.0.2.0/24 -all"});
  auto r = check(dns, "192.0.2.77");
  EXPECT_EQ(r.result, SpfResult::kPass);
  EXPECT_EQ(r.matched, "ip4:192.0.2.0/24");
  EXPECT_EQ(r.record, "v=spf1 ip4:192.0.2.0/24 -all");
  EXPECT_EQ(r.dns_lookups, 0);
}

TEST(Spf, QualifiersOfAllGiveFailSoftfailNeutral) {
  FakeDns dns;
  dns.txt("fail.example", {"v=spf1 ip4:192.0.2.1 -all"});
  dns.txt("soft.example", {"v=spf1 ip4:192.0.2.1 ~all"});
  dns.txt("neutral.example", {"v=spf1 ?all"});
  dns.txt("plain.example", {"v=spf1 ip4:192.0.2.1"});
  EXPECT_EQ(check(dns, "198.51.100.1", "fail.example").result, SpfResult::kFail);
  EXPECT_EQ(check(dns, "198.51.100.1", "soft.example").result, SpfResult::kSoftFail);
  EXPECT_EQ(check(dns, "198.51.100.1", "neutral.example").result, SpfResult::kNeutral);
  EXPECT_EQ(check(dns, "198.51.100.1", "plain.example").result, SpfResult::kNeutral);
  EXPECT_EQ(check(dns, "192.0.2.1", "fail.example").result, SpfResult::kPass);
}

TEST(Spf, NoneWithoutARecordOrDomain) {
  FakeDns dns;
  dns.txt("example.org", {"google-site-verification=abc"});
  EXPECT_EQ(check(dns, "192.0.2.1").result, SpfResult::kNone);
  EXPECT_EQ(check(dns, "192.0.2.1", "missing.example").result, SpfResult::kNone);
  EXPECT_EQ(check(dns, "192.0.2.1", "nodots").result, SpfResult::kNone);
}

TEST(Spf, TwoRecordsArePermError) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 ip4:192.0.2.1 -all", "v=spf1 a -all"});
  auto r = check(dns, "192.0.2.1");
  EXPECT_EQ(r.result, SpfResult::kPermError);
  EXPECT_NE(r.detail.find("2 v=spf1 records"), std::string::npos) << r.detail;
}

TEST(Spf, VersionMustBeFollowedBySpaceOrEnd) {
  EXPECT_TRUE(spf_records({"v=spf10 -all", "v=spf1x"}).empty());
  EXPECT_EQ(spf_records({"V=SPF1 -all", "v=spf1"}).size(), 2u);
}

TEST(Spf, Ip6RangesAndFamilies) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 ip6:2001:db8:1::/48 ip4:192.0.2.0/24 -all"});
  EXPECT_EQ(check(dns, "2001:db8:1:ff::25").result, SpfResult::kPass);
  EXPECT_EQ(check(dns, "2001:db8:2::25").result, SpfResult::kFail);
  EXPECT_EQ(check(dns, "192.0.2.9").result, SpfResult::kPass);
}

TEST(Spf, AMechanismWithDualCidr) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 a:web.example.org/24//64 -all"});
  dns.a("web.example.org", {"203.0.113.10"});
  dns.aaaa("web.example.org", {"2001:db8:5::1"});
  EXPECT_EQ(check(dns, "203.0.113.200").result, SpfResult::kPass);
  EXPECT_EQ(check(dns, "2001:db8:5::ffff").result, SpfResult::kPass);
  EXPECT_EQ(check(dns, "203.0.114.1").result, SpfResult::kFail);
  EXPECT_EQ(check(dns, "203.0.113.200").dns_lookups, 1);
}

TEST(Spf, AWithoutDomainUsesTheCurrentDomain) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 a -all"});
  dns.a("example.org", {"192.0.2.5"});
  EXPECT_EQ(check(dns, "192.0.2.5").result, SpfResult::kPass);
}

TEST(Spf, MxMechanismLooksAtEachHostsAddresses) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 mx -all"});
  dns.mx("example.org", {{10, "mx1.example.org"}, {20, "mx2.example.org"}});
  dns.a("mx1.example.org", {"192.0.2.1"});
  dns.a("mx2.example.org", {"192.0.2.2"});
  auto r = check(dns, "192.0.2.2");
  EXPECT_EQ(r.result, SpfResult::kPass);
  EXPECT_EQ(r.matched, "mx");
  EXPECT_EQ(check(dns, "192.0.2.3").result, SpfResult::kFail);
}

TEST(Spf, IncludePassMatchesOtherResultsDoNot) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 include:_spf.provider.example ~all"});
  dns.txt("_spf.provider.example", {"v=spf1 ip4:198.51.100.0/24 -all"});
  EXPECT_EQ(check(dns, "198.51.100.3").result, SpfResult::kPass);
  EXPECT_EQ(check(dns, "192.0.2.3").result, SpfResult::kSoftFail);  // the include's -all does not end it
}

TEST(Spf, IncludeOfADomainWithoutRecordIsPermError) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 include:nothing.example -all"});
  dns.txt("nothing.example", {"hello"});
  EXPECT_EQ(check(dns, "192.0.2.3").result, SpfResult::kPermError);
}

TEST(Spf, IncludeLoopStopsAtTheLookupLimit) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 include:loop.example.org -all"});
  dns.txt("loop.example.org", {"v=spf1 include:loop.example.org -all"});
  auto r = check(dns, "192.0.2.3");
  EXPECT_EQ(r.result, SpfResult::kPermError);
  EXPECT_EQ(r.dns_lookups, kSpfMaxDnsLookups + 1);
  EXPECT_NE(r.detail.find("more than 10 DNS lookups"), std::string::npos) << r.detail;
  EXPECT_LT(dns.queries, 20);
}

TEST(Spf, TenLookupsAreAllowed) {
  FakeDns dns;
  std::string record = "v=spf1";
  for (int i = 0; i < 9; ++i) {
    std::string n = std::to_string(i);
    std::string name = std::string("h").append(n).append(".example.org");
    dns.a(name, {std::string("203.0.113.").append(n)});
    record += " a:" + name;
  }
  dns.a("last.example.org", {"192.0.2.1"});
  dns.txt("example.org", {record + " a:last.example.org -all"});
  auto r = check(dns, "192.0.2.1");
  EXPECT_EQ(r.result, SpfResult::kPass);
  EXPECT_EQ(r.dns_lookups, 10);
}

TEST(Spf, RedirectAppliesOnlyWhenNothingMatched) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 ip4:192.0.2.1 redirect=_spf.example.net"});
  dns.txt("_spf.example.net", {"v=spf1 ip4:198.51.100.0/24 -all"});
  EXPECT_EQ(check(dns, "198.51.100.7").result, SpfResult::kPass);
  EXPECT_EQ(check(dns, "203.0.113.7").result, SpfResult::kFail);
  EXPECT_EQ(check(dns, "192.0.2.1").result, SpfResult::kPass);
  dns.txt("all.example", {"v=spf1 redirect=_spf.example.net ?all"});
  EXPECT_EQ(check(dns, "198.51.100.7", "all.example").result, SpfResult::kNeutral);
  dns.txt("gone.example", {"v=spf1 redirect=missing.example"});
  EXPECT_EQ(check(dns, "198.51.100.7", "gone.example").result, SpfResult::kPermError);
}

TEST(Spf, ExistsWithMacros) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 exists:%{ir}.%{l1r-}._spf.%{d} -all"});
  dns.a("7.2.0.192.postmaster._spf.example.org", {"127.0.0.2"});
  EXPECT_EQ(check(dns, "192.0.2.7").result, SpfResult::kPass);
  EXPECT_EQ(check(dns, "192.0.2.8").result, SpfResult::kFail);
}

TEST(Spf, Ip6MacroIsNibbles) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 exists:%{i}.%{v}.example.org -all"});
  dns.a("2.0.0.1.0.d.b.8.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.ip6.example.org", {"127.0.0.2"});
  EXPECT_EQ(check(dns, "2001:db8::1").result, SpfResult::kPass);
}

TEST(Spf, PtrCountsButNeverMatches) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 ptr -all"});
  auto r = check(dns, "192.0.2.1");
  EXPECT_EQ(r.result, SpfResult::kFail);
  EXPECT_EQ(r.dns_lookups, 1);
}

TEST(Spf, MoreThanTwoVoidLookupsArePermError) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 a:v1.example.org a:v2.example.org a:v3.example.org -all"});
  auto r = check(dns, "192.0.2.1");
  EXPECT_EQ(r.result, SpfResult::kPermError);
  EXPECT_EQ(r.void_lookups, 3);
  dns.txt("two.example", {"v=spf1 a:v1.example.org a:v2.example.org -all"});
  EXPECT_EQ(check(dns, "192.0.2.1", "two.example").result, SpfResult::kFail);
}

TEST(Spf, ServerFailureIsTempError) {
  FakeDns dns;
  dns.servfail("example.org");
  EXPECT_EQ(check(dns, "192.0.2.1").result, SpfResult::kTempError);
  dns.txt("ok.example", {"v=spf1 a:broken.example -all"});
  dns.servfail("broken.example");
  EXPECT_EQ(check(dns, "192.0.2.1", "ok.example").result, SpfResult::kTempError);
}

TEST(Spf, SyntaxErrorsAnywhereArePermError) {
  FakeDns dns;
  dns.txt("a.example", {"v=spf1 +all foo:bar"});
  dns.txt("b.example", {"v=spf1 ip4:300.1.1.1 -all"});
  dns.txt("c.example", {"v=spf1 ip4:192.0.2.0/33 -all"});
  dns.txt("d.example", {"v=spf1 include: -all"});
  dns.txt("e.example", {"v=spf1 redirect=a.example redirect=b.example"});
  dns.txt("f.example", {"v=spf1 exists:%{z}.example.org -all"});
  for (const char* d : {"a.example", "b.example", "c.example", "d.example", "e.example", "f.example"})
    EXPECT_EQ(check(dns, "192.0.2.1", d).result, SpfResult::kPermError) << d;
}

TEST(Spf, UnknownModifiersAreIgnored) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 foo=bar ip4:192.0.2.1 -all"});
  EXPECT_EQ(check(dns, "192.0.2.1").result, SpfResult::kPass);
}

TEST(Spf, MxWithMoreThanTenHostsIsPermError) {
  FakeDns dns;
  std::vector<smtp::MxRecord> many;
  for (int i = 0; i < 11; ++i) many.push_back({i, std::string("mx").append(std::to_string(i)).append(".example.org")});
  dns.mx("example.org", many);
  dns.txt("example.org", {"v=spf1 mx -all"});
  EXPECT_EQ(check(dns, "192.0.2.1").result, SpfResult::kPermError);
}

TEST(DnsServerAddress, AcceptsIpv4AndIpv6WithOrWithoutPort) {
  auto v4 = smtp::parse_dns_server("127.0.0.1:5353");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->family, AF_INET);
  EXPECT_EQ(v4->port, 5353);
  auto v6 = smtp::parse_dns_server("[::1]:5353");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->family, AF_INET6);
  EXPECT_EQ(v6->ip, "::1");
  EXPECT_EQ(v6->port, 5353);
  auto bare = smtp::parse_dns_server("::1");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->port, 53);
  EXPECT_TRUE(smtp::parse_dns_server("[2001:db8::53]"));
  for (const char* bad : {"", "dns.example", "127.0.0.1:0", "127.0.0.1:", "[::1]:", "[::1", "[127.0.0.1]:53", "::1:x"})
    EXPECT_FALSE(smtp::parse_dns_server(bad)) << bad;
}

TEST(TxtRecords, MultipleStringsAreJoined) {
  // A response with one TXT record of two strings ("v=spf1 " and "-all").
  std::vector<unsigned char> m = {0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0};
  for (unsigned char c : std::string("\x07"
                                     "example\x03org"))
    m.push_back(c);
  m.insert(m.end(), {0, 0, 16, 0, 1});
  m.insert(m.end(), {0xC0, 0x0C, 0, 16, 0, 1, 0, 0, 1, 0, 0, 13});
  m.push_back(7);
  for (char c : std::string("v=spf1 ")) m.push_back(static_cast<unsigned char>(c));
  m.push_back(4);
  for (char c : std::string("-all")) m.push_back(static_cast<unsigned char>(c));
  auto a = smtp::parse_dns_response(m.data(), m.size(), DnsType::kTxt);
  ASSERT_EQ(a.status, DnsStatus::kOk);
  ASSERT_EQ(a.txt.size(), 1u);
  EXPECT_EQ(a.txt[0], "v=spf1 -all");
}

// ---- the whole domain check, over the fake DNS ----------------------------------------------

namespace {

void good_domain(FakeDns& dns) {
  dns.txt("example.org", {"v=spf1 ip4:192.0.2.10 -all"});
  dns.txt("s1._domainkey.example.org", {"v=DKIM1; k=rsa; p=AAAA BBBB"});
  dns.txt("_dmarc.example.org", {"v=DMARC1; p=reject; rua=mailto:d@example.org"});
  dns.mx("example.org", {{10, "mx.example.org"}});
}

DomainCheckOptions options() {
  DomainCheckOptions o;
  o.outbound_ip = "192.0.2.10";
  o.outbound_ip_source = "OUTBOUND_IP";
  o.dkim_keys.push_back({"s1", "rsa", "AAAABBBB", "v=DKIM1; k=rsa; p=AAAABBBB"});
  return o;
}

}  // namespace

TEST(DomainCheck, AGoodDomainPasses) {
  FakeDns dns;
  good_domain(dns);
  auto r = check_domain(dns, "example.org", options());
  EXPECT_TRUE(r["ok"].get<bool>()) << r.dump(2);
  EXPECT_EQ(r["spf"]["result"], "pass");
  EXPECT_TRUE(r["dkim"]["selectors"][0]["matches"].get<bool>());
  EXPECT_EQ(r["dmarc"]["policy"], "reject");
  EXPECT_TRUE(r["mx"]["valid"].get<bool>());
}

TEST(DomainCheck, EachBrokenRecordIsFlagged) {
  {
    FakeDns dns;
    good_domain(dns);
    dns.txt("s1._domainkey.example.org", {"v=DKIM1; k=rsa; p=CCCCDDDD"});
    auto r = check_domain(dns, "example.org", options());
    EXPECT_FALSE(r["ok"].get<bool>());
    EXPECT_TRUE(r["dkim"]["selectors"][0]["valid"].get<bool>());
    EXPECT_FALSE(r["dkim"]["selectors"][0]["matches"].get<bool>());
    EXPECT_EQ(r["dkim"]["publish"], "s1._domainkey.example.org. TXT \"v=DKIM1; k=rsa; p=AAAABBBB\"");
  }
  {
    FakeDns dns;
    good_domain(dns);
    dns.txt("_dmarc.example.org", {"v=DMARC1; p=maybe"});
    auto r = check_domain(dns, "example.org", options());
    EXPECT_FALSE(r["ok"].get<bool>());
    EXPECT_TRUE(r["dmarc"]["found"].get<bool>());
    EXPECT_FALSE(r["dmarc"]["valid"].get<bool>());
  }
  {
    FakeDns dns;
    good_domain(dns);
    dns.mx("example.org", {{0, ""}});
    auto r = check_domain(dns, "example.org", options());
    EXPECT_FALSE(r["ok"].get<bool>());
    EXPECT_FALSE(r["mx"]["valid"].get<bool>());
    EXPECT_TRUE(r["spf"]["valid"].get<bool>());
  }
  {
    FakeDns dns;
    good_domain(dns);
    dns.txt("example.org", {"v=spf1 ip4:198.51.100.1 -all"});
    auto r = check_domain(dns, "example.org", options());
    EXPECT_FALSE(r["ok"].get<bool>());
    EXPECT_EQ(r["spf"]["result"], "fail");
    EXPECT_EQ(r["spf"]["publish"], "example.org. TXT \"v=spf1 ip4:192.0.2.10 ip4:198.51.100.1 -all\"");
    EXPECT_EQ(r["dmarc"]["result"], "pass");  // DKIM still passes aligned
  }
}

TEST(DomainCheck, WithoutAKeyReportsUnsignedMailButMayPass) {
  FakeDns dns;
  good_domain(dns);
  auto o = options();
  o.dkim_keys.clear();
  auto r = check_domain(dns, "example.org", o);
  EXPECT_TRUE(r["ok"].get<bool>());
  EXPECT_FALSE(r["dkim"]["configured"].get<bool>());
  EXPECT_NE(r["dkim"]["details"].get<std::string>().find("unsigned"), std::string::npos);
}

TEST(DomainCheck, TagLists) {
  auto t = parse_tag_list(" v=DKIM1 ; k=rsa; p=AB CD ;");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->size(), 3u);
  EXPECT_EQ((*t)[2].second, "AB CD");
  EXPECT_FALSE(parse_tag_list("v=DKIM1; v=DKIM1"));
  EXPECT_FALSE(parse_tag_list("v=DKIM1; junk"));
  EXPECT_FALSE(parse_tag_list("v=DKIM1;; p=x"));
}

TEST(DomainCheck, CheckableDomains) {
  EXPECT_TRUE(is_checkable_domain("example.org"));
  EXPECT_TRUE(is_checkable_domain("xn--bcher-kva.example"));
  EXPECT_FALSE(is_checkable_domain("localhost"));
  EXPECT_FALSE(is_checkable_domain("a..b"));
  EXPECT_FALSE(is_checkable_domain("exa mple.org"));
  EXPECT_FALSE(is_checkable_domain("_dmarc.example.org"));
}

TEST(DomainCheck, OutboundAddressTowardsLoopbackIsLoopback) {
  EXPECT_EQ(outbound_address("127.0.0.1", 25).value_or(""), "127.0.0.1");
}

TEST(DomainCheck, ASubdomainFallsUnderItsParentsDmarcRecord) {
  FakeDns dns;
  dns.txt("news.example.org", {"v=spf1 ip4:192.0.2.10 -all"});
  dns.mx("news.example.org", {{10, "mx.example.org"}});
  dns.txt("_dmarc.example.org", {"v=DMARC1; p=reject; sp=quarantine"});
  auto o = options();
  o.dkim_keys.clear();
  auto r = check_domain(dns, "news.example.org", o);
  EXPECT_TRUE(r["ok"].get<bool>()) << r.dump(2);
  EXPECT_EQ(r["dmarc"]["name"], "_dmarc.example.org");
  EXPECT_TRUE(r["dmarc"]["inherited"].get<bool>());
  EXPECT_EQ(r["dmarc"]["policy"], "quarantine");  // sp= applies to subdomains
  // The walk stops above the top-level domain: _dmarc.org is never asked.
  dns.txt("_dmarc.org", {"v=DMARC1; p=none"});
  dns.txt("_dmarc.example.org", {"unrelated"});
  r = check_domain(dns, "news.example.org", o);
  EXPECT_FALSE(r["dmarc"]["found"].get<bool>());
  EXPECT_EQ(r["dmarc"]["name"], "_dmarc.news.example.org");
}

TEST(Spf, MacroLettersTransformersAndEscapes) {
  FakeDns dns;
  dns.txt("example.org", {"v=spf1 exists:%{l}.%{o}.%{h}.%{d2}.x.example.org -all"});
  dns.a("postmaster.example.org.gw.example.org.example.org.x.example.org", {"127.0.0.2"});
  EXPECT_EQ(check(dns, "192.0.2.1").result, SpfResult::kPass);

  dns.txt("b.example", {"v=spf1 exists:%{L}.%{l1+}.%{s}.b.example -all"});
  dns.a("first%2Blast.last.first+last@example.b.example", {"127.0.0.2"});
  auto r = check_spf(dns, SpfRequest{"192.0.2.1", "b.example", "first+last@example", ""});
  EXPECT_EQ(r.result, SpfResult::kPass) << r.detail;

  dns.txt("c.example", {"v=spf1 exists:%%a%-.c.example -all"});  // "%%" is "%", "%-" is "%20"
  dns.a("%a%20.c.example", {"127.0.0.2"});
  EXPECT_EQ(check(dns, "192.0.2.1", "c.example").result, SpfResult::kPass);
  dns.txt("d.example", {"v=spf1 exists:a%_b.d.example -all"});  // "%_" is a space: not in a name
  EXPECT_EQ(check(dns, "192.0.2.1", "d.example").result, SpfResult::kPermError);
}
