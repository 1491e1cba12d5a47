// `websmtpctl domain check DOMAIN`: whether mail from DOMAIN sent by this gateway would pass
// receivers' checks (GET {admin}/admin/domains/DOMAIN/check): SPF for the gateway's outbound
// address, DKIM for each key it holds, DMARC, MX; per record found / valid / what to publish.
// Exit 0 when it would pass, 1 when not (or the server refused), 3 when unreachable.
#include <algorithm>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "output.hpp"

namespace websmtp::ctl {

namespace {

// The check waits on DNS lookups (each up to a few seconds when a server is silent).
constexpr std::chrono::seconds kCheckWait{60};

std::string yes_no(const nlohmann::json& record, const char* key) {
  auto it = record.find(key);
  if (it == record.end() || !it->is_boolean()) return "-";
  return it->get<bool>() ? "yes" : "NO";
}

std::string value_text(const nlohmann::json& record) {
  auto it = record.find("value");
  if (it == record.end() || it->is_null()) return "-";
  if (it->is_string()) return printable_excerpt(it->get<std::string>(), 60);
  std::string out;
  if (it->is_array())
    for (const auto& v : *it)
      if (v.is_string()) {
        if (!out.empty()) out += " | ";
        out += v.get<std::string>();
      }
  return printable_excerpt(out, 60);
}

struct Row {
  std::string record, found, valid, result, value;
};

std::string format_rows(const std::vector<Row>& rows) {
  std::vector<std::size_t> width(4, 0);
  for (const auto& r : rows) {
    width[0] = std::max(width[0], r.record.size());
    width[1] = std::max(width[1], r.found.size());
    width[2] = std::max(width[2], r.valid.size());
    width[3] = std::max(width[3], r.result.size());
  }
  auto pad = [](const std::string& s, std::size_t w) { return s + std::string(w - s.size() + 2, ' '); };
  std::string out;
  for (const auto& r : rows)
    out += pad(r.record, width[0]) + pad(r.found, width[1]) + pad(r.valid, width[2]) + pad(r.result, width[3]) +
           r.value + "\n";
  return out;
}

std::string format_check(const nlohmann::json& a) {
  std::string out = json_string(a, "domain") + ": " +
                    (json_bool(a, "ok") ? "OK, mail from it would pass" : "FAIL, mail from it would not pass") +
                    " (outbound address " + json_string(a, "outbound_ip", "unknown") + ", from " +
                    json_string(a, "outbound_ip_source", "?") + ")\n\n";
  std::vector<Row> rows = {{"RECORD", "FOUND", "VALID", "RESULT", "VALUE"}};
  std::vector<std::pair<std::string, std::string>> publish;
  auto object = [&](const char* key) {
    auto it = a.find(key);
    return it != a.end() && it->is_object() ? *it : nlohmann::json::object();
  };
  auto add_publish = [&](const std::string& what, const nlohmann::json& r) {
    std::string p = json_string(r, "publish");
    if (!p.empty()) publish.emplace_back(what, p);
  };
  const auto spf = object("spf");
  rows.push_back({"SPF", yes_no(spf, "found"), yes_no(spf, "valid"), json_string(spf, "result", "-"), value_text(spf)});
  add_publish("SPF", spf);
  const auto dkim = object("dkim");
  auto selectors = dkim.find("selectors");
  if (selectors != dkim.end() && selectors->is_array() && !selectors->empty()) {
    for (const auto& s : *selectors) {
      std::string label = "DKIM " + json_string(s, "selector");
      // Only a valid published key can differ from the one held: no record is "missing".
      const std::string result = !json_bool(s, "found")    ? "missing"
                                 : !json_bool(s, "valid")  ? "invalid"
                                 : json_bool(s, "matches") ? "key matches"
                                                           : "KEY DIFFERS";
      rows.push_back({label, yes_no(s, "found"), yes_no(s, "valid"), result, value_text(s)});
      add_publish(label, s);
    }
  } else {
    rows.push_back({"DKIM", "-", "-", "no key", "(mail is sent unsigned)"});
    add_publish("DKIM", dkim);
  }
  const auto dmarc = object("dmarc");
  std::string policy = json_string(dmarc, "policy");
  rows.push_back({"DMARC", yes_no(dmarc, "found"), yes_no(dmarc, "valid"),
                  policy.empty() ? "-" : "p=" + policy + " " + json_string(dmarc, "result"), value_text(dmarc)});
  add_publish("DMARC", dmarc);
  const auto mx = object("mx");
  rows.push_back({"MX", yes_no(mx, "found"), yes_no(mx, "valid"), "-", value_text(mx)});
  add_publish("MX", mx);
  out += format_rows(rows);

  auto problems = a.find("problems");
  if (problems != a.end() && problems->is_array() && !problems->empty()) {
    out += "\nProblems:\n";
    for (const auto& p : *problems)
      if (p.is_string()) out += "  - " + printable_excerpt(p.get<std::string>(), 400) + "\n";
  }
  if (!publish.empty()) {
    out += "\nPublish:\n";
    for (const auto& [what, text] : publish) {
      std::string indented;
      for (char c : text) indented += c == '\n' ? std::string("\n      ") : std::string(1, c);
      out += "  " + what + ": " + indented + "\n";
    }
  }
  return out;
}

}  // namespace

Subcommand setup_domain(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<DomainOptions>();
  options->global = &global;
  auto* domain = app.add_subcommand("domain", "Check a sending domain's DNS records (admin API)");
  domain->require_subcommand(1);
  auto* check = domain->add_subcommand(
      "check", "Would mail from DOMAIN pass receivers' checks? SPF, DKIM, DMARC and MX, and what to publish");
  check->add_option("DOMAIN", options->domain, "The sending domain (the From address's domain)")->required();
  return {check, [options] { return run_domain_check(*options); }};
}

int run_domain_check(const DomainOptions& options) {
  const GlobalOptions& global = *options.global;
  auto client = make_client(global, global.admin_url);
  if (!client) return kExitUsage;

  const auto result = client->get("/admin/domains/" + percent_encode(options.domain) + "/check", kCheckWait);
  if (!result) return report_failure(result.error(), client->base());
  const auto& response = result.value();
  if (response.status < 200 || response.status > 299) return report_refusal(response);
  const auto answer = parse_json_object(response.body);
  if (!answer) return report_unexpected(response);

  if (global.json)
    print_json_answer(response);
  else
    std::cout << format_check(*answer) << std::flush;
  return json_bool(*answer, "ok") ? kExitOk : kExitRefused;
}

}  // namespace websmtp::ctl
