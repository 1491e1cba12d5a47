// Request-body JSON: nesting limit and duplicate keys, directly and through job validation.
#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <string_view>

#include "websmtp/job/strict_json.hpp"
#include "websmtp/job/validation.hpp"

using namespace websmtp;
using namespace websmtp::job;

namespace {

std::string nested_arrays(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

// {"a":{"a":...{"a":1}...}} with `depth` objects.
std::string nested_objects(std::size_t depth) {
  std::string s;
  for (std::size_t i = 0; i < depth; ++i) s += "{\"a\":";
  s += "1";
  s += std::string(depth, '}');
  return s;
}

void expect_refused(const std::string& text, const std::string& code, const std::string& field = "") {
  auto r = parse_strict_json(text);
  ASSERT_FALSE(r) << text;
  EXPECT_EQ(r.error().kind, ErrorKind::kInvalid) << text;
  EXPECT_EQ(r.error().code, code) << text;
  EXPECT_EQ(r.error().field, field) << text;
  EXPECT_FALSE(r.error().message.empty());
}

constexpr const char* kJob = R"("from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b")";

// The pieces joined (with +=: GCC 12 warns falsely on "{" + std::string(...), PR 105329).
std::string cat(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (auto p : parts) s += p;
  return s;
}

}  // namespace

TEST(StrictJson, BuildsTheSameDocumentAsNlohmann) {
  const std::string text =
      R"({"s":"h\u00e9llo","n":-3,"u":18446744073709551615,"f":1.5e3,"t":true,"z":null,"a":[[],{},[1,"x"]],)"
      R"("o":{"k":{"k":[{"k":1},{"k":2}]}}})";
  auto r = parse_strict_json(text);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, nlohmann::json::parse(text));
  EXPECT_EQ(parse_strict_json("7").value(), 7);
  EXPECT_EQ(parse_strict_json(" \"x\" ").value(), "x");
}

TEST(StrictJson, AcceptsThirtyTwoLevelsAndRefusesThirtyThree) {
  EXPECT_TRUE(parse_strict_json(nested_arrays(32)));
  EXPECT_TRUE(parse_strict_json(nested_objects(32)));
  expect_refused(nested_arrays(33), "json_too_deep");
  expect_refused(nested_objects(33), "json_too_deep");
  // Mixed containers count alike; scalars are not a level.
  EXPECT_TRUE(parse_strict_json(cat({"{\"a\":", nested_arrays(31), "}"})));
  expect_refused(cat({"{\"a\":", nested_arrays(32), "}"}), "json_too_deep");
}

TEST(StrictJson, RefusesHugeNestingWithoutBuildingIt) {
  // A 10 MB body of '[' stops at level 33: no deep document to build, walk or destroy.
  expect_refused(std::string(10 * 1024 * 1024, '['), "json_too_deep");
}

TEST(StrictJson, RefusesDuplicateKeysWithTheirPath) {
  expect_refused(R"({"to":"a@b.cc","to":"c@d.ee"})", "duplicate_key", "to");
  expect_refused(R"({"a":{"b":1,"b":2}})", "duplicate_key", "a.b");
  expect_refused(R"({"a":[0,{"x":1},{"b":1,"b":2}]})", "duplicate_key", "a[2].b");
  expect_refused(R"([[{"b":1,"b":2}]])", "duplicate_key", "[0][0].b");
  // Escapes are decoded before comparing: "t\u006f" is "to".
  expect_refused(R"({"to":1,"t\u006f":2})", "duplicate_key", "to");
  // The empty key at the top has an empty path: the message still says which key.
  auto r = parse_strict_json(R"({"":1,"":2})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "");
  EXPECT_EQ(r.error().message, "the request body names \"\" twice; a JSON object may name each key only once");
  r = parse_strict_json(R"({"jobs":[{},{"a":{"from":1,"from":2}}]})");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "jobs[1].a.from");
  EXPECT_EQ(r.error().message, "jobs[1].a names \"from\" twice; a JSON object may name each key only once");
  // The first fault found is the one reported.
  expect_refused(R"({"a":1,"a":2,)", "duplicate_key", "a");
}

TEST(StrictJson, SameKeyInDifferentObjectsIsFine) {
  EXPECT_TRUE(parse_strict_json(R"({"a":{"x":1},"b":{"x":1},"c":[{"x":1},{"x":2}],"x":0})"));
  EXPECT_TRUE(parse_strict_json(R"({"X-A":1,"x-a":2})"));  // JSON keys are case-sensitive
}

TEST(StrictJson, StillRefusesWhatNlohmannRefuses) {
  expect_refused("", "invalid_json");
  expect_refused("{", "invalid_json");
  expect_refused("{} {}", "invalid_json");
  expect_refused("{\"a\":\"\xff\"}", "invalid_json");      // invalid UTF-8
  expect_refused("{\"a\":\"\xc0\xaf\"}", "invalid_json");  // overlong encoding
  expect_refused("{\"a\":\"\\ud800\"}", "invalid_json");   // lone surrogate
  expect_refused("{\"a\":1,}", "invalid_json");
  expect_refused("{/*c*/}", "invalid_json");
  expect_refused("{\"a\":1e999}", "invalid_json");
}

TEST(Validation, RefusesDeepJsonInARequest) {
  auto r = parse_request(cat({"{", kJob, ",\"x\":", nested_arrays(32), "}"}), Limits{});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "json_too_deep");
  // 31 levels inside the request object: 32 in all, accepted (the unknown field is ignored).
  EXPECT_TRUE(parse_request(cat({"{", kJob, ",\"x\":", nested_arrays(31), "}"}), Limits{}));
}

TEST(Validation, RefusesDuplicateKeysInARequest) {
  auto r = parse_request(R"({"from":"a@b.cc","to":["x@y.zz"],"subject":"s","body":"b","to":["evil@y.zz"]})", Limits{});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().kind, ErrorKind::kInvalid);
  EXPECT_EQ(r.error().code, "duplicate_key");
  EXPECT_EQ(r.error().field, "to");

  r = parse_request(cat({"{", kJob, R"(,"headers":{"X-A":"1","X-B":"2","X-A":"3"}})"}), Limits{});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "duplicate_key");
  EXPECT_EQ(r.error().field, "headers.X-A");

  r = parse_request(
      cat({"{", kJob,
           R"(,"attachments":[{"filename":"a","content":""},{"filename":"b","content":"","filename":"c"}]})"}),
      Limits{});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "attachments[1].filename");
}

TEST(Validation, RefusesDuplicateKeysInABatchJob) {
  std::string job = cat({"{", kJob, "}"});
  std::string bad = R"({"from":"a@b.cc","from":"other@b.cc","to":["x@y.zz"],"subject":"s","body":"b"})";
  auto r = parse_json_object(cat({R"({"jobs":[)", job, ",", job, ",", bad, "]}"}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, "duplicate_key");
  EXPECT_EQ(r.error().field, "jobs[2].from");

  r = parse_json_object(cat({R"({"jobs":[)", job, R"(],"jobs":[]})"}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "jobs");
}
