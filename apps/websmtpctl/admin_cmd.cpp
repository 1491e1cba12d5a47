// The admin API's queue control: `jobs`, `show REF`, `retry [REF | --all]`, `cancel REF`,
// `pause`, `resume`, `suppress list|add ADDR|remove ADDR` (api.md "Command line"), each a
// request to {admin}/admin/... printed as a table, or as the server's JSON with --json.
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "output.hpp"

namespace websmtp::ctl {

namespace {

std::string jobs_target(const AdminOptions& o) {
  std::string t = "/admin/jobs";
  char sep = '?';
  auto add = [&](const char* key, const std::string& value) {
    t += sep;
    t += key;
    t += '=';
    t += percent_encode(value);
    sep = '&';
  };
  if (o.state) add("state", *o.state);
  if (o.limit) add("limit", std::to_string(*o.limit));
  if (o.after) add("after", *o.after);
  return t;
}

HttpResult send(const HttpClient& client, const AdminOptions& o) {
  const std::string ref = percent_encode(o.ref);
  const std::string address = percent_encode(o.address);
  if (o.action == "jobs") return client.get(jobs_target(o));
  if (o.action == "show") return client.get("/admin/jobs/" + ref + (o.body ? "?body=1" : ""));
  if (o.action == "retry") return client.post_json(o.all ? "/admin/retry" : "/admin/jobs/" + ref + "/retry", "");
  if (o.action == "cancel") return client.post_json("/admin/jobs/" + ref + "/cancel", "");
  if (o.action == "pause" || o.action == "resume") return client.post_json("/admin/" + o.action, "");
  if (o.action == "suppress-list") return client.get("/admin/suppressions");
  if (o.action == "suppress-add") return client.put("/admin/suppressions/" + address);
  return client.del("/admin/suppressions/" + address);
}

// The human line (or table) for a successful answer.
std::string readable(const AdminOptions& o, const nlohmann::json& answer) {
  if (o.action == "jobs") return format_jobs(answer);
  if (o.action == "show") return format_job(answer);
  if (o.action == "suppress-list") return format_suppressions(answer);
  if (o.action == "retry") {
    if (o.all) return "retried " + std::to_string(json_int(answer, "retried")) + " deferred job(s)\n";
    return json_int(answer, "retried") ? "retrying " + o.ref + " now\n" : o.ref + " has no deferred recipient\n";
  }
  if (o.action == "cancel") return format_status(answer, o.ref);
  if (o.action == "pause") return "delivery paused (submits are still accepted)\n";
  if (o.action == "resume") return "delivery resumed\n";
  if (o.action == "suppress-add") return "suppressed " + json_string(answer, "address", o.address) + "\n";
  return "no longer suppressed: " + o.address + "\n";
}

}  // namespace

std::vector<Subcommand> setup_admin(CLI::App& app, const GlobalOptions& global) {
  std::vector<Subcommand> out;
  auto make = [&](CLI::App* sub, const char* action) {
    auto o = std::make_shared<AdminOptions>();
    o->global = &global;
    o->action = action;
    out.push_back({sub, [o] { return run_admin(*o); }});
    return o;
  };

  auto* jobs = app.add_subcommand("jobs", "List jobs, newest first (admin API)");
  auto jo = make(jobs, "jobs");
  jobs->add_option("--state", jo->state, "Only jobs in this state")
      ->check(CLI::IsMember({"queued", "in_flight", "deferred", "completed", "failed"}));
  jobs->add_option("--limit", jo->limit, "Jobs per page (1-1000, default 50)")->check(CLI::Range(1, 1000));
  jobs->add_option("--after", jo->after, "Continue after this ref (the previous page's last)");

  auto* show = app.add_subcommand("show", "A job in full: status, envelope, every attempt (admin API)");
  auto so = make(show, "show");
  show->add_option("REF", so->ref, "The job's ref")->required();
  show->add_flag("--body", so->body, "Also print the message as sent (while it is stored)");

  auto* retry = app.add_subcommand("retry", "Attempt deferred recipients now: one job, or every deferred job with --all");
  auto ro = make(retry, "retry");
  auto* ref_opt = retry->add_option("REF", ro->ref, "The job's ref");
  auto* all_opt = retry->add_flag("--all", ro->all, "Every deferred job");
  ref_opt->excludes(all_opt);
  retry->require_option(1);

  auto* cancel = app.add_subcommand("cancel", "Cancel a job: recipients not yet delivered fail (reason cancelled)");
  auto co = make(cancel, "cancel");
  cancel->add_option("REF", co->ref, "The job's ref")->required();

  make(app.add_subcommand("pause", "Stop delivery (submits are still accepted; survives a restart)"), "pause");
  make(app.add_subcommand("resume", "Start delivery again"), "resume");

  auto* suppress = app.add_subcommand("suppress", "Addresses never sent to (admin API)");
  suppress->require_subcommand(1);
  make(suppress->add_subcommand("list", "List suppressed addresses"), "suppress-list");
  auto* add = suppress->add_subcommand("add", "Suppress an address");
  auto ao = make(add, "suppress-add");
  add->add_option("ADDR", ao->address, "The address")->required();
  auto* remove = suppress->add_subcommand("remove", "Stop suppressing an address");
  auto rmo = make(remove, "suppress-remove");
  remove->add_option("ADDR", rmo->address, "The address")->required();
  return out;
}

int run_admin(const AdminOptions& options) {
  const GlobalOptions& global = *options.global;
  auto client = make_client(global, global.admin_url);
  if (!client) return kExitUsage;

  const HttpResult result = send(*client, options);
  if (!result) return report_failure(result.error(), client->base());
  const auto& response = result.value();
  if (response.status < 200 || response.status > 299) return report_refusal(response);
  if (response.status == 204) {
    if (global.json)
      std::cout << nlohmann::json{{"address", options.address}, {"removed", true}}.dump() << '\n';
    else
      std::cout << readable(options, nlohmann::json::object()) << std::flush;
    return kExitOk;
  }
  const auto answer = parse_json_object(response.body);
  if (!answer) return report_unexpected(response);
  if (global.json)
    print_json_answer(response);
  else
    std::cout << readable(options, *answer) << std::flush;
  return kExitOk;
}

}  // namespace websmtp::ctl
