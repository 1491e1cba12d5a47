#include "websmtp/message/dkim.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <fstream>
#include <map>
#include <memory>
#include <thread>

#include "../../support/temp_dir.hpp"
#include "websmtp/common/base64.hpp"
#include "websmtp/common/text.hpp"
#include "websmtp/config/config.hpp"
#include "websmtp/message/mime.hpp"

using namespace websmtp::message;
using namespace websmtp::message::dkim;

namespace {

// RFC 8463 Appendix A: the same message signed rsa-sha256 and ed25519-sha256, relaxed/relaxed.
// The RSA key (A.1, also RFC 6376's example key) and the Ed25519 key (A.1, its 32-byte seed
// nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A= as PKCS#8); both signature schemes are
// deterministic, so our canonicalization and signing must reproduce the RFC's b= exactly.
constexpr const char* kRfcRsaKey =
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIICXQIBAAKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQi\n"
    "Y/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqM\n"
    "KrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB\n"
    "AoGAH0cxOhFZDgzXWhDhnAJDw5s4roOXN4OhjiXa8W7Y3rhX3FJqmJSPuC8N9vQm\n"
    "6SVbaLAE4SG5mLMueHlh4KXffEpuLEiNp9Ss3O4YfLiQpbRqE7Tm5SxKjvvQoZZe\n"
    "zHorimOaChRL2it47iuWxzxSiRMv4c+j70GiWdxXnxe4UoECQQDzJB/0U58W7RZy\n"
    "6enGVj2kWF732CoWFZWzi1FicudrBFoy63QwcowpoCazKtvZGMNlPWnC7x/6o8Gc\n"
    "uSe0ga2xAkEA8C7PipPm1/1fTRQvj1o/dDmZp243044ZNyxjg+/OPN0oWCbXIGxy\n"
    "WvmZbXriOWoSALJTjExEgraHEgnXssuk7QJBALl5ICsYMu6hMxO73gnfNayNgPxd\n"
    "WFV6Z7ULnKyV7HSVYF0hgYOHjeYe9gaMtiJYoo0zGN+L3AAtNP9huqkWlzECQE1a\n"
    "licIeVlo1e+qJ6Mgqr0Q7Aa7falZ448ccbSFYEPD6oFxiOl9Y9se9iYHZKKfIcst\n"
    "o7DUw1/hz2Ck4N5JrgUCQQCyKveNvjzkkd8HjYs0SwM0fPjK16//5qDZ2UiDGnOe\n"
    "uEzxBDAr518Z8VFbR41in3W4Y3yCDgQlLlcETrS+zYcL\n"
    "-----END RSA PRIVATE KEY-----\n";
constexpr const char* kRfcRsaPublic =
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/"
    "byYzCNb3W91y3Fu"
    "tACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB";
constexpr const char* kRfcEdKey =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
    "-----END PRIVATE KEY-----\n";

constexpr const char* kRfcMessage =
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n";

// The RFC's signature fields up to and including "b=" (the value is what we must produce).
constexpr const char* kRfcRsaField =
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    " date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=";
constexpr const char* kRfcRsaB =
    "F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz"
    "dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=";
constexpr const char* kRfcEdField =
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=";
constexpr const char* kRfcEdB =
    "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";

const std::vector<std::string> kRfcNames = {"from", "to", "subject", "date", "message-id", "from", "subject", "date"};

PrivateKey key_from(const char* pem) {
  auto k = PrivateKey::from_pem(pem);
  EXPECT_TRUE(k.has_value()) << (k ? "" : k.error().message);
  return *k;
}

std::string generated_pem(const char* type, std::size_t bits = 0) {
  EVP_PKEY* raw = bits                             ? EVP_PKEY_Q_keygen(nullptr, nullptr, type, bits)
                  : std::string_view(type) == "EC" ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")
                                                   : EVP_PKEY_Q_keygen(nullptr, nullptr, type);
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(raw, EVP_PKEY_free);
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  PEM_write_bio_PrivateKey(bio.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

// One 2048-bit key for the whole suite: generating RSA keys is slow under the sanitizers.
const PrivateKey& rsa2048() {
  static const PrivateKey key = *PrivateKey::from_pem(generated_pem("RSA", 2048));
  return key;
}

// A small verifier for our own output (the integration test verifies with dkimpy): finds the
// first DKIM-Signature, checks bh= against the body and b= against the header with the public key.
struct Verdict {
  bool body_ok = false;
  bool signature_ok = false;
  std::map<std::string, std::string> tags;
};
Verdict verify(const std::string& message, const PrivateKey& key) {
  Verdict v;
  SplitMessage split = split_message(message);
  if (split.fields.empty() || !websmtp::iequals(split.fields[0].name, "DKIM-Signature")) return v;
  const std::string_view field = split.fields[0].text;
  std::string unfolded;
  for (char c : field.substr(field.find(':') + 1))
    if (c != '\r' && c != '\n' && c != ' ' && c != '\t') unfolded += c;
  std::size_t pos = 0;
  while (pos < unfolded.size()) {
    std::size_t end = unfolded.find(';', pos);
    if (end == std::string::npos) end = unfolded.size();
    std::string tag = unfolded.substr(pos, end - pos);
    const std::size_t eq = tag.find('=');
    if (eq != std::string::npos) v.tags[tag.substr(0, eq)] = tag.substr(eq + 1);
    pos = end + 1;
  }
  v.body_ok = body_hash(split.body) == v.tags["bh"];
  // b= is the last tag: the field up to the first "b=" after a ';' and WSP is the field hashed.
  std::size_t b = 0;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] != ';') continue;
    std::size_t j = i + 1;
    while (j < field.size() && (field[j] == ' ' || field[j] == '\t' || field[j] == '\r' || field[j] == '\n')) ++j;
    if (field.substr(j, 2) == "b=") b = j + 2;
  }
  std::vector<std::string> names;
  std::string h = v.tags["h"];
  for (std::size_t p = 0; p <= h.size();) {
    std::size_t e = h.find(':', p);
    if (e == std::string::npos) e = h.size();
    names.push_back(h.substr(p, e - p));
    p = e + 1;
  }
  std::vector<Field> rest(split.fields.begin() + 1, split.fields.end());
  const std::string input = header_hash_input(rest, names, field.substr(0, b));
  const auto sig = websmtp::base64_decode(v.tags["b"]);
  const auto pub = websmtp::base64_decode(key.public_key_base64());
  if (!sig || !pub) return v;
  const auto* p = reinterpret_cast<const unsigned char*>(pub->data());
  EVP_PKEY* raw = key.algorithm() == Algorithm::kRsaSha256
                      ? d2i_PUBKEY(nullptr, &p, static_cast<long>(pub->size()))
                      : EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, p, pub->size());
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> pkey(raw, EVP_PKEY_free);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::string data = input;
  const EVP_MD* md = EVP_sha256();
  if (key.algorithm() == Algorithm::kEd25519Sha256) {
    unsigned char d[32];
    unsigned int n = 0;
    EVP_Digest(input.data(), input.size(), d, &n, EVP_sha256(), nullptr);
    data.assign(reinterpret_cast<const char*>(d), n);
    md = nullptr;
  }
  v.signature_ok = pkey && EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, pkey.get()) == 1 &&
                   EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig->data()), sig->size(),
                                    reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  return v;
}

std::string rendered_message() {
  websmtp::job::MailRequest req;
  req.from = {"Zoë Ünïcode", "zoe@example.org"};
  req.to = {{"Bob", "bob@example.net"}, {"", "carol@example.com"}};
  req.cc = {{"Dan", "dan@example.com"}};
  req.reply_to = websmtp::job::Mailbox{"", "help@example.org"};
  req.subject = "Grüße — a subject long enough to be folded over more than one line of the header, surely";
  req.text = "Hello   there,\t\n\ntrailing spaces   \nénorme\n\n\n";
  req.html = "<p>Hello</p>";
  req.headers = {{"X-Campaign", "welcome"}, {"List-Unsubscribe", "<mailto:unsub@example.org>"}};
  req.attachments.push_back({"naïve.pdf", "application/pdf", std::string(3000, '\x01')});
  BuildOptions o;
  o.date_unix = 1700000000;
  return build_message(req, o);
}

std::string replace_once(std::string s, const std::string& from, const std::string& to) {
  const std::size_t at = s.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) s.replace(at, from.size(), to);
  return s;
}

}  // namespace

// ---- Canonicalization: RFC 6376 3.4.5's examples ------------------------------------------

TEST(DkimCanonicalization, RelaxedHeaderMatchesRfc6376Example) {
  EXPECT_EQ(relaxed_header("A: X\r\n"), "a:X\r\n");
  EXPECT_EQ(relaxed_header("B : Y\t\r\n\tZ  \r\n"), "b:Y Z\r\n");
}

TEST(DkimCanonicalization, RelaxedBodyMatchesRfc6376Example) {
  EXPECT_EQ(relaxed_body(" C \r\nD \t E\r\n\r\n\r\n"), " C\r\nD E\r\n");
}

TEST(DkimCanonicalization, RelaxedHeaderUnfoldsAndTrims) {
  EXPECT_EQ(relaxed_header("SUBJECT:   many \t  words\r\n   folded\r\n"), "subject:many words folded\r\n");
  EXPECT_EQ(relaxed_header("Empty:\r\n"), "empty:\r\n");
  EXPECT_EQ(relaxed_header("To: a,\r\n b\r\n"), "to:a, b\r\n");
  EXPECT_EQ(relaxed_header("X-Y:z"), "x-y:z\r\n");  // no CRLF given: one is added
}

TEST(DkimCanonicalization, RelaxedBodyEdgeCases) {
  EXPECT_EQ(relaxed_body(""), "");
  EXPECT_EQ(relaxed_body("\r\n\r\n"), "");        // only empty lines: an empty body
  EXPECT_EQ(relaxed_body(" \t \r\n  \r\n"), "");  // lines of WSP are empty lines
  EXPECT_EQ(relaxed_body("no final crlf"), "no final crlf\r\n");
  EXPECT_EQ(relaxed_body("a\r\n\r\n\r\nb\r\n\r\n"), "a\r\n\r\n\r\nb\r\n");  // inner empty lines stay
  EXPECT_EQ(relaxed_body("\tlead\r\n"), " lead\r\n");  // leading WSP becomes one space, not nothing
  EXPECT_EQ(relaxed_body("a\nb \r\n"), "a\nb\r\n");    // a bare LF is not a line end here
  EXPECT_EQ(relaxed_body("x\r\n\r\n  y"), "x\r\n\r\n y\r\n");
}

TEST(DkimCanonicalization, BodyHashOfEmptyBodyIsSha256OfNothing) {
  EXPECT_EQ(body_hash(""), "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=");
  EXPECT_EQ(body_hash("\r\n"), body_hash(""));
}

TEST(DkimCanonicalization, BodyHashMatchesRfc8463Example) {
  EXPECT_EQ(body_hash(split_message(kRfcMessage).body), "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");
}

TEST(DkimCanonicalization, LongBodiesHashLikeTheirCanonicalForm) {
  std::string body;
  for (int i = 0; i < 5000; ++i) body += "line  " + std::to_string(i) + " \t with   spaces   \r\n";
  body += std::string(200000, 'x') + "\r\n\r\n";  // a line longer than the digest's chunk
  const std::string canonical = relaxed_body(body);
  unsigned char md[32];
  unsigned int n = 0;
  EVP_Digest(canonical.data(), canonical.size(), md, &n, EVP_sha256(), nullptr);
  EXPECT_EQ(body_hash(body), websmtp::base64_encode(std::string_view(reinterpret_cast<const char*>(md), n)));
}

// ---- Header parsing and selection --------------------------------------------------------

TEST(DkimHeader, SplitsFoldedFieldsAndBody) {
  const std::string m = "From: a@b.example\r\nSubject: one\r\n two\r\nX : y\r\n\r\nbody\r\n";
  auto s = split_message(m);
  ASSERT_EQ(s.fields.size(), 3u);
  EXPECT_EQ(s.fields[0].name, "From");
  EXPECT_EQ(s.fields[1].text, "Subject: one\r\n two\r\n");
  EXPECT_EQ(s.fields[2].name, "X");
  EXPECT_EQ(s.body, "body\r\n");
}

TEST(DkimHeader, SignsPresentFieldsAndOverSignsFrom) {
  const std::string m =
      "Date: d\r\nFrom: a@b.example\r\nTo: c@d.example\r\nSubject: s\r\nMessage-ID: <x@y>\r\nMIME-Version: 1.0\r\n"
      "X-Test-Id: 1\r\nList-Unsubscribe: <mailto:u@b.example>\r\nContent-Type: text/plain\r\n\r\n";
  const auto names = signed_header_names(split_message(m).fields);
  const std::vector<std::string> want = {
      "Date",         "From",        "To",      "Subject", "Message-ID", "MIME-Version", "List-Unsubscribe",
      "Content-Type",  // present, in message order; then the over-signed names:
      "From",         "Reply-To",    "Subject", "Date",    "Message-ID", "To",           "Cc",
      "MIME-Version", "Content-Type"};
  EXPECT_EQ(names, want);
  EXPECT_EQ(std::count(names.begin(), names.end(), "From"), 2);
  EXPECT_EQ(std::count(names.begin(), names.end(), "X-Test-Id"), 0);  // not signed
}

TEST(DkimHeader, PicksInstancesBottomUp) {
  // RFC 6376 5.4.2: the first "x" in h= takes the last X field.
  const std::string m = "X: first\r\nX: second\r\n\r\n";
  const auto s = split_message(m);
  EXPECT_EQ(header_hash_input(s.fields, {"x"}, "DKIM-Signature: b="), "x:second\r\ndkim-signature:b=");
  EXPECT_EQ(header_hash_input(s.fields, {"x", "x", "x"}, "DKIM-Signature: b="),
            "x:second\r\nx:first\r\ndkim-signature:b=");
}

// ---- RFC 8463 Appendix A: exact signatures -------------------------------------------------

TEST(DkimSign, ReproducesRfc8463RsaSignature) {
  const PrivateKey key = key_from(kRfcRsaKey);
  EXPECT_EQ(key.algorithm(), Algorithm::kRsaSha256);
  EXPECT_EQ(key.bits(), 1024);
  EXPECT_EQ(key.public_key_base64(), kRfcRsaPublic);
  const auto fields = split_message(kRfcMessage).fields;
  EXPECT_EQ(websmtp::base64_encode(key.sign(header_hash_input(fields, kRfcNames, kRfcRsaField))), kRfcRsaB);
}

TEST(DkimSign, ReproducesRfc8463Ed25519Signature) {
  const PrivateKey key = key_from(kRfcEdKey);
  EXPECT_EQ(key.algorithm(), Algorithm::kEd25519Sha256);
  EXPECT_EQ(key.public_key_base64(), "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
  EXPECT_EQ(key.dns_record(), "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
  const auto fields = split_message(kRfcMessage).fields;
  EXPECT_EQ(websmtp::base64_encode(key.sign(header_hash_input(fields, kRfcNames, kRfcEdField))), kRfcEdB);
}

// ---- Our signature field -----------------------------------------------------------------

TEST(DkimSign, FieldHasTheTagsAndVerifies) {
  const std::string message = rendered_message();
  const std::string field = signature_field(message, rsa2048(), {"example.org", "s2025", 1700000000});
  ASSERT_FALSE(field.empty());
  const Verdict v = verify(field + message, rsa2048());
  EXPECT_TRUE(v.body_ok);
  EXPECT_TRUE(v.signature_ok);
  EXPECT_EQ(v.tags.at("v"), "1");
  EXPECT_EQ(v.tags.at("a"), "rsa-sha256");
  EXPECT_EQ(v.tags.at("c"), "relaxed/relaxed");
  EXPECT_EQ(v.tags.at("d"), "example.org");
  EXPECT_EQ(v.tags.at("s"), "s2025");
  EXPECT_EQ(v.tags.at("t"), "1700000000");
  EXPECT_EQ(v.tags.count("l"), 0u);  // the whole body is signed
  EXPECT_EQ(v.tags.at("h").rfind("Date:From:To:Cc:Reply-To:Subject:Message-ID:MIME-Version:List-Unsubscribe:"
                                 "Content-Type:From:",
                                 0),
            0u)
      << v.tags.at("h");
  EXPECT_EQ(v.tags.at("b").size(), 344u);  // 256 bytes of RSA-2048 signature
}

TEST(DkimSign, FieldIsFoldedWithin78Columns) {
  // Many signed fields make a long h=; a long domain and selector push tags to new lines.
  std::string message = rendered_message();
  std::string extra;
  for (const char* name : {"List-Id", "List-Help", "List-Owner", "List-Subscribe", "List-Post", "List-Unsubscribe-Post",
                           "In-Reply-To", "References", "Resent-From", "Resent-To", "Resent-Cc"})
    extra += std::string(name) + ": <x@example.org>\r\n";
  message.insert(0, extra);
  for (const auto& [domain, selector] : std::vector<std::pair<std::string, std::string>>{
           {"example.org", "s"},
           {"a-rather-long-subdomain.of-an-organisation.example.org", "selector-2025-01.eu-west"},
           {std::string(60, 'd') + ".example", std::string(60, 's')}}) {
    for (const PrivateKey* key : std::vector<const PrivateKey*>{&rsa2048(), nullptr}) {
      const PrivateKey k = key ? *key : key_from(kRfcEdKey);
      const std::string field = signature_field(message, k, {domain, selector, 1700000000});
      ASSERT_GE(field.size(), 2u);
      ASSERT_EQ(field.substr(field.size() - 2), "\r\n");
      std::size_t start = 0;
      int lines = 0;
      while (start < field.size()) {
        const std::size_t end = field.find("\r\n", start);
        const std::string line = field.substr(start, end - start);
        EXPECT_LE(line.size(), 78u) << line;
        if (lines > 0) {
          EXPECT_EQ(line.front(), ' ') << line;  // every continuation starts with WSP
        }
        EXPECT_NE(line.find_first_not_of(' '), std::string::npos);  // and is never blank
        EXPECT_EQ(line.find('\t'), std::string::npos);
        ++lines;
        start = end + 2;
      }
      EXPECT_GT(lines, 3);
      const Verdict v = verify(field + message, k);
      EXPECT_TRUE(v.body_ok && v.signature_ok) << field;
    }
  }
}

TEST(DkimSign, ChangedBodyByteOrSignedHeaderFailsVerification) {
  const std::string message = rendered_message();
  const std::string signed_message = signature_field(message, rsa2048(), {"example.org", "s", 1}) + message;
  ASSERT_TRUE(verify(signed_message, rsa2048()).signature_ok);

  const Verdict body = verify(replace_once(signed_message, "Hello</p>", "Hellp</p>"), rsa2048());
  EXPECT_FALSE(body.body_ok);

  const Verdict subject = verify(replace_once(signed_message, "Subject: ", "Subject: Re: "), rsa2048());
  EXPECT_TRUE(subject.body_ok);
  EXPECT_FALSE(subject.signature_ok);

  // Over-signing: a second From (or a Reply-To where there was none... here a second one) breaks it.
  const Verdict from =
      verify(replace_once(signed_message, "\r\nFrom: ", "\r\nFrom: evil@example.org\r\nFrom: "), rsa2048());
  EXPECT_FALSE(from.signature_ok);

  // An unsigned field may change (a relay's own headers), and folding differences do not matter.
  const Verdict unsigned_field =
      verify(replace_once(signed_message, "X-Campaign: welcome", "X-Campaign: other"), rsa2048());
  EXPECT_TRUE(unsigned_field.body_ok && unsigned_field.signature_ok);
  const Verdict refolded = verify(replace_once(signed_message, "Subject: ", "Subject:\r\n\t  "), rsa2048());
  EXPECT_TRUE(refolded.body_ok && refolded.signature_ok);
}

// ---- Keys ---------------------------------------------------------------------------------

TEST(DkimKey, RefusesWhatCannotSign) {
  EXPECT_FALSE(PrivateKey::from_pem("not a key").has_value());
  const auto small = PrivateKey::from_pem(generated_pem("RSA", 512));
  ASSERT_FALSE(small.has_value());
  EXPECT_NE(small.error().message.find("512 bits"), std::string::npos) << small.error().message;
  const auto ec = PrivateKey::from_pem(generated_pem("EC"));
  ASSERT_FALSE(ec.has_value());
  EXPECT_NE(ec.error().message.find("neither an RSA nor an Ed25519"), std::string::npos) << ec.error().message;
  // A public key is not a private key.
  EXPECT_FALSE(PrivateKey::from_pem("-----BEGIN PUBLIC KEY-----\n" + std::string(kRfcRsaPublic).substr(0, 64) +
                                    "\n-----END PUBLIC KEY-----\n")
                   .has_value());
}

TEST(DkimKey, PublishesTheRsaPublicKeyAsSubjectPublicKeyInfo) {
  EXPECT_EQ(key_from(kRfcRsaKey).dns_record(), std::string("v=DKIM1; k=rsa; p=") + kRfcRsaPublic);
}

TEST(DkimKey, ParsesKeyFileNames) {
  std::string s, d;
  ASSERT_TRUE(parse_key_file_name("s2025._domainkey.Example.ORG.pem", s, d));
  EXPECT_EQ(s, "s2025");
  EXPECT_EQ(d, "example.org");
  ASSERT_TRUE(parse_key_file_name("eu.s1._domainkey.mail.example.org.pem", s, d));
  EXPECT_EQ(s, "eu.s1");
  EXPECT_EQ(d, "mail.example.org");
  EXPECT_FALSE(parse_key_file_name("example.org.pem", s, d));
  EXPECT_FALSE(parse_key_file_name("s._domainkey.example.org.key", s, d));
  EXPECT_FALSE(parse_key_file_name("._domainkey.example.org.pem", s, d));
  EXPECT_FALSE(parse_key_file_name("s._domainkey.org.pem", s, d));  // not a domain under a TLD
  EXPECT_FALSE(parse_key_file_name("s p._domainkey.example.org.pem", s, d));
  EXPECT_EQ(key_file_name("s1", "example.org"), "s1._domainkey.example.org.pem");
}

// ---- Signer -------------------------------------------------------------------------------

TEST(DkimSigner, SignsOnlyAnExactFromDomainMatch) {
  Signer signer;
  ASSERT_TRUE(signer.add({"Example.org", "s1", rsa2048(), "test"}).has_value());
  const std::string original = rendered_message();

  std::string m = original;
  EXPECT_EQ(signer.sign(m, "zoe@EXAMPLE.org", 1700000000), 1);
  EXPECT_EQ(m.rfind("DKIM-Signature: v=1; a=rsa-sha256;", 0), 0u);
  EXPECT_EQ(m.substr(m.size() - original.size()), original);  // prepended, nothing else changed
  const Verdict v = verify(m, rsa2048());
  EXPECT_TRUE(v.body_ok && v.signature_ok);
  EXPECT_EQ(v.tags.at("d"), "example.org");

  for (const char* from : {"zoe@news.example.org", "zoe@example.org.evil", "zoe@example.net", "no-at-sign"}) {
    std::string unsigned_message = original;
    EXPECT_EQ(signer.sign(unsigned_message, from, 1), 0) << from;
    EXPECT_EQ(unsigned_message, original) << from;
  }
}

TEST(DkimSigner, SignsWithRsaAndEd25519WhenTheDomainHasBoth) {
  Signer signer;
  ASSERT_TRUE(signer.add({"example.org", "ed", key_from(kRfcEdKey), "ed.pem"}).has_value());
  ASSERT_TRUE(signer.add({"example.org", "rsa", rsa2048(), "rsa.pem"}).has_value());
  const auto dup = signer.add({"example.org", "rsa2", key_from(kRfcRsaKey), "rsa2.pem"});
  ASSERT_FALSE(dup.has_value());
  EXPECT_NE(dup.error().message.find("rsa.pem and rsa2.pem"), std::string::npos) << dup.error().message;
  EXPECT_EQ(signer.size(), 2u);

  std::string m = rendered_message();
  ASSERT_EQ(signer.sign(m, "a@example.org", 5), 2);
  EXPECT_EQ(m.rfind("DKIM-Signature: v=1; a=rsa-sha256;", 0), 0u);  // RSA on top
  EXPECT_TRUE(verify(m, rsa2048()).signature_ok);
  const auto second = split_message(m).fields[1];
  EXPECT_NE(second.text.find("a=ed25519-sha256"), std::string::npos);
  EXPECT_TRUE(verify(m.substr(split_message(m).fields[0].text.size()), key_from(kRfcEdKey)).signature_ok);
}

TEST(DkimSigner, SignsFromManyThreadsAtOnce) {
  // The reactor threads share one Signer (and so one EVP_PKEY per key) without a lock.
  Signer signer;
  ASSERT_TRUE(signer.add({"example.org", "s1", rsa2048(), "test"}).has_value());
  ASSERT_TRUE(signer.add({"example.org", "ed", key_from(kRfcEdKey), "ed"}).has_value());
  const std::string original = rendered_message();
  std::vector<std::string> results(4 * 8);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (std::size_t i = 0; i < 8; ++i) {
        std::string m = original;
        signer.sign(m, "a@example.org", 1700000000);
        results[t * 8 + i] = std::move(m);
      }
    });
  for (auto& t : threads) t.join();
  for (const auto& m : results) EXPECT_EQ(m, results.front());  // both schemes are deterministic
  EXPECT_TRUE(verify(results.front(), rsa2048()).signature_ok);
}

// ---- Loading from the configuration --------------------------------------------------------

namespace {
void write_file(const std::string& path, const std::string& text, mode_t mode = 0600) {
  std::ofstream(path) << text;
  ::chmod(path.c_str(), mode);
}
std::string config_error(const websmtp::config::Config& c) {
  try {
    load_signer(c);
  } catch (const websmtp::config::ConfigError& e) {
    return e.key + " | " + e.what();
  }
  return "no error";
}
}  // namespace

TEST(DkimLoad, ReadsKeysDirAndSingleKey) {
  websmtp::test_support::TempDir dir;
  write_file(dir.file("s1._domainkey.example.org.pem"), kRfcRsaKey);
  write_file(dir.file("ed._domainkey.example.org.pem"), kRfcEdKey);
  write_file(dir.file("README"), "not a key, and not *.pem: ignored");
  write_file(dir.file("single.pem.key"), kRfcRsaKey);
  websmtp::config::Config c;
  c.dkim_keys_dir = dir.path().string();
  c.dkim_domain = "Other.example";
  c.dkim_selector = "x";
  c.dkim_key_file = dir.file("single.pem.key");
  const Signer signer = load_signer(c);
  EXPECT_EQ(signer.size(), 3u);
  ASSERT_NE(signer.keys_for("example.org"), nullptr);
  EXPECT_EQ(signer.keys_for("example.org")->size(), 2u);
  ASSERT_NE(signer.keys_for("other.example"), nullptr);
  EXPECT_EQ(signer.keys_for("other.example")->front().selector, "x");
  EXPECT_EQ(signer.keys_for("sub.example.org"), nullptr);
}

TEST(DkimLoad, AnInternationalisedDkimDomainSignsAsItsALabels) {
  websmtp::test_support::TempDir dir;
  write_file(dir.file("single.pem"), kRfcRsaKey);
  websmtp::config::Config c;
  c.dkim_domain = "Bücher.example";
  c.dkim_selector = "s1";
  c.dkim_key_file = dir.file("single.pem");
  const Signer signer = load_signer(c);
  ASSERT_NE(signer.keys_for("xn--bcher-kva.example"), nullptr);
  // Submit signs with the envelope sender, whose domain is in A-labels: d= is that form.
  std::string message = rendered_message();
  EXPECT_EQ(signer.sign(message, "anna@xn--bcher-kva.example", 1700000000), 1);
  EXPECT_NE(message.find("d=xn--bcher-kva.example;"), std::string::npos) << message.substr(0, 400);
  c.dkim_domain = "\xE2\x98\x83.example";  // U+2603: no A-label form
  EXPECT_THROW(load_signer(c), websmtp::config::ConfigError);
}

TEST(DkimLoad, RefusesToStartNamingTheKeyAtFault) {
  websmtp::test_support::TempDir dir;
  websmtp::config::Config c;

  c.dkim_keys_dir = dir.file("missing");
  EXPECT_NE(config_error(c).find("DKIM_KEYS_DIR | configuration DKIM_KEYS_DIR: cannot read"), std::string::npos)
      << config_error(c);

  c.dkim_keys_dir = dir.path().string();
  write_file(dir.file("example.org.pem"), kRfcRsaKey);
  EXPECT_NE(config_error(c).find("example.org.pem is not named <selector>._domainkey.<domain>.pem"), std::string::npos)
      << config_error(c);
  std::filesystem::remove(dir.file("example.org.pem"));

  write_file(dir.file("s1._domainkey.example.org.pem"), generated_pem("EC"));
  EXPECT_NE(config_error(c).find("s1._domainkey.example.org.pem: is neither an RSA nor an Ed25519"), std::string::npos)
      << config_error(c);
  write_file(dir.file("s1._domainkey.example.org.pem"), kRfcRsaKey);
  write_file(dir.file("s2._domainkey.example.org.pem"), kRfcRsaKey);
  EXPECT_NE(config_error(c).find("two rsa-sha256 keys for example.org"), std::string::npos) << config_error(c);
  std::filesystem::remove(dir.file("s2._domainkey.example.org.pem"));
  EXPECT_EQ(config_error(c), "no error");

  c.dkim_keys_dir.clear();
  c.dkim_domain = "example.net";
  c.dkim_selector = "s1";
  c.dkim_key_file = dir.file("nope.pem");
  EXPECT_NE(config_error(c).find("DKIM_KEY_FILE | configuration DKIM_KEY_FILE: cannot open"), std::string::npos)
      << config_error(c);
  write_file(dir.file("garbage.pem"), "garbage");
  c.dkim_key_file = dir.file("garbage.pem");
  EXPECT_NE(config_error(c).find("garbage.pem: holds no PEM private key"), std::string::npos) << config_error(c);
  c.dkim_key_file = dir.file("s1._domainkey.example.org.pem");
  c.dkim_domain = "not a domain";
  EXPECT_NE(config_error(c).find("DKIM_DOMAIN | "), std::string::npos) << config_error(c);
}

TEST(DkimConfig, OneKeyNeedsDomainSelectorAndFile) {
  auto load = [](std::map<std::string, std::string> env) {
    env["DELIVERY"] = "sandbox";
    return websmtp::config::load(
        [&](const std::string& k) -> std::optional<std::string> {
          auto it = env.find(k);
          return it == env.end() ? std::nullopt : std::optional<std::string>(it->second);
        },
        {});
  };
  EXPECT_TRUE(load({}).dkim_key_file.empty());
  const auto c = load({{"DKIM_DOMAIN", "example.org"},
                       {"DKIM_SELECTOR", "s1"},
                       {"DKIM_KEY_FILE", "/k.pem"},
                       {"DKIM_KEYS_DIR", "/keys"}});
  EXPECT_EQ(c.dkim_domain, "example.org");
  EXPECT_EQ(c.dkim_selector, "s1");
  EXPECT_EQ(c.dkim_key_file, "/k.pem");
  EXPECT_EQ(c.dkim_keys_dir, "/keys");
  try {
    load({{"DKIM_DOMAIN", "example.org"}, {"DKIM_KEY_FILE", "/k.pem"}});
    FAIL() << "no error";
  } catch (const websmtp::config::ConfigError& e) {
    EXPECT_EQ(e.key, "DKIM_SELECTOR");
  }
}
