// `websmtpctl keys create|list|revoke`: API keys, through the admin API (POST/GET
// {admin}/admin/keys, DELETE {admin}/admin/keys/ID). The full key is printed once, at creation.
#include <algorithm>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "output.hpp"

namespace websmtp::ctl {

namespace {

nlohmann::json create_body(const KeysOptions& o) {
  nlohmann::json body = {{"name", o.name}, {"type", o.publishable ? "publishable" : "secret"}};
  auto list = [&](const char* key, const std::vector<std::string>& v) {
    if (!v.empty()) body[key] = v;
  };
  list("origins", o.origins);
  list("senders", o.senders);
  list("recipients", o.recipients);
  list("recipient_domains", o.recipient_domains);
  auto number = [&](const char* key, const std::optional<std::int64_t>& v) {
    if (v) body[key] = *v;
  };
  number("max_recipients", o.max_recipients);
  number("max_message_bytes", o.max_message_bytes);
  number("rate_per_minute", o.rate_per_minute);
  number("rate_per_day", o.rate_per_day);
  return body;
}

std::string joined(const nlohmann::json& k, const char* key) {
  auto it = k.find(key);
  if (it == k.end() || !it->is_array()) return {};
  std::string out;
  for (const auto& v : *it) {
    if (!v.is_string()) continue;
    if (!out.empty()) out += ",";
    out += printable_excerpt(v.get<std::string>(), 80);
  }
  return out;
}

// One line per key: id, type, prefix, state, name, then the policy in brief.
std::string format_keys(const nlohmann::json& answer) {
  std::vector<std::vector<std::string>> rows = {{"ID", "TYPE", "PREFIX", "STATE", "CREATED", "LAST USED", "NAME", "POLICY"}};
  auto it = answer.find("keys");
  if (it != answer.end() && it->is_array()) {
    for (const auto& k : *it) {
      if (!k.is_object()) continue;
      std::string policy;
      for (const char* key : {"origins", "senders", "recipients", "recipient_domains"}) {
        std::string v = joined(k, key);
        if (!v.empty()) policy += std::string(policy.empty() ? "" : " ") + key + "=" + v;
      }
      for (const char* key : {"max_recipients", "max_message_bytes", "rate_per_minute", "rate_per_day"}) {
        if (k.contains(key)) policy += std::string(policy.empty() ? "" : " ") + key + "=" + std::to_string(json_int(k, key));
      }
      std::int64_t used = json_int(k, "last_used");
      rows.push_back({json_string(k, "id"), json_string(k, "type"), json_string(k, "prefix") + "...",
                      json_bool(k, "revoked") ? "revoked" : "live", format_local_time(json_int(k, "created")),
                      used ? format_local_time(used) : "never", printable_excerpt(json_string(k, "name"), 40),
                      policy.empty() ? "-" : policy});
    }
  }
  std::string out = format_table(rows);
  if (rows.size() == 1) out += "(no keys)\n";
  return out;
}

}  // namespace

std::vector<Subcommand> setup_keys(CLI::App& app, const GlobalOptions& global) {
  auto* keys = app.add_subcommand("keys", "Create, list and revoke API keys (admin API, loopback only)");
  keys->require_subcommand(1);

  auto create = std::make_shared<KeysOptions>();
  create->global = &global;
  create->action = "create";
  auto* c = keys->add_subcommand("create", "Create a key; the full key is printed once, keep it");
  c->add_option("--name", create->name, "What the key is for (shown in the list)")->required();
  c->add_flag("--publishable", create->publishable,
              "A publishable key (pk_...) for web pages: honoured only from its --origin pages");
  c->add_option("--origin", create->origins, "scheme://host[:port] a publishable key may be used from (repeatable)");
  c->add_option("--sender", create->senders, "Allowed From address or *@domain (repeatable; default: any)");
  c->add_option("--recipient", create->recipients,
                "The only recipients allowed (repeatable): e.g. a contact form that mails its owner");
  c->add_option("--recipient-domain", create->recipient_domains, "Allowed recipient domain (repeatable)");
  c->add_option("--max-recipients", create->max_recipients, "Most recipients per job")->check(CLI::PositiveNumber);
  c->add_option("--max-message-bytes", create->max_message_bytes, "Largest message")->check(CLI::PositiveNumber);
  c->add_option("--rate-per-minute", create->rate_per_minute, "Jobs per minute")->check(CLI::PositiveNumber);
  c->add_option("--rate-per-day", create->rate_per_day, "Jobs per day")->check(CLI::PositiveNumber);

  auto list = std::make_shared<KeysOptions>();
  list->global = &global;
  list->action = "list";
  auto* l = keys->add_subcommand("list", "List keys (never the keys themselves: their prefix, policy and use)");

  auto revoke = std::make_shared<KeysOptions>();
  revoke->global = &global;
  revoke->action = "revoke";
  auto* r = keys->add_subcommand("revoke", "Revoke a key: refused from the next request on");
  r->add_option("ID", revoke->id, "The key's id (key_...), from `keys list`")->required();

  return {{c, [create] { return run_keys(*create); }},
          {l, [list] { return run_keys(*list); }},
          {r, [revoke] { return run_keys(*revoke); }}};
}

int run_keys(const KeysOptions& options) {
  const GlobalOptions& global = *options.global;
  auto client = make_client(global, global.admin_url);
  if (!client) return kExitUsage;

  HttpResult result = options.action == "create" ? client->post_json("/admin/keys", create_body(options).dump())
                      : options.action == "list" ? client->get("/admin/keys")
                                                 : client->del("/admin/keys/" + percent_encode(options.id));
  if (!result) return report_failure(result.error(), client->base());
  const auto& response = result.value();
  if (response.status < 200 || response.status > 299) return report_refusal(response);
  if (options.action == "revoke") {
    if (global.json)
      std::cout << nlohmann::json{{"id", options.id}, {"revoked", true}}.dump() << '\n';
    else
      std::cout << "revoked " << options.id << '\n';
    return kExitOk;
  }
  const auto answer = parse_json_object(response.body);
  if (!answer) return report_unexpected(response);
  if (global.json) {
    print_json_answer(response);
  } else if (options.action == "create") {
    std::cout << json_string(*answer, "key") << '\n';
    std::cerr << "Created " << json_string(*answer, "type") << " key " << json_string(*answer, "id")
              << ". This is the only time the key is shown: store it now.\n";
  } else {
    std::cout << format_keys(*answer) << std::flush;
  }
  return kExitOk;
}

}  // namespace websmtp::ctl
