#pragma once
// The subcommands of websmtpctl: one options struct, one setup_x and one run_x per file
// (send_cmd.cpp, status_cmd.cpp, queue_cmd.cpp), wired together by main.cpp.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "global_options.hpp"

namespace CLI {
class App;
}  // namespace CLI

namespace websmtp::ctl {

// A subcommand as main() sees it: the parsed CLI11 node and the action to run if chosen.
struct Subcommand {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

struct SendOptions {
  const GlobalOptions* global = nullptr;
  std::string from;
  std::vector<std::string> to;
  std::vector<std::string> cc;
  std::vector<std::string> bcc;
  std::optional<std::string> reply_to;
  std::string subject;
  std::optional<std::string> body;
  std::optional<std::string> body_file;
  std::optional<std::string> html;
  std::optional<std::string> html_file;
  std::vector<std::string> headers;  // "Name: value"
  std::optional<std::string> idempotency_key;
  bool wait = false;
  double wait_timeout_s = 60;
};
Subcommand setup_send(CLI::App& app, const GlobalOptions& global);
int run_send(const SendOptions& options);

struct StatusOptions {
  const GlobalOptions* global = nullptr;
  std::string ref;
  bool wait = false;
  double wait_timeout_s = 60;
};
Subcommand setup_status(CLI::App& app, const GlobalOptions& global);
int run_status(const StatusOptions& options);

// GET the status once, or with `wait` poll until completed or the wait times out; prints
// it and returns the exit code. Shared by `status` and `send --wait`.
int show_status(const HttpClient& client, const std::string& ref, bool json, bool wait, double wait_timeout_s);

struct QueueOptions {
  const GlobalOptions* global = nullptr;
};
Subcommand setup_queue(CLI::App& app, const GlobalOptions& global);
int run_queue(const QueueOptions& options);

struct KeysOptions {
  const GlobalOptions* global = nullptr;
  std::string action;  // create | list | revoke
  std::string name;
  bool publishable = false;
  std::vector<std::string> origins, senders, recipients, recipient_domains;
  std::optional<std::int64_t> max_recipients, max_message_bytes, rate_per_minute, rate_per_day;
  std::string id;  // revoke
};
// `keys create|list|revoke`: API keys through the admin API.
std::vector<Subcommand> setup_keys(CLI::App& app, const GlobalOptions& global);
int run_keys(const KeysOptions& options);

struct AdminOptions {
  const GlobalOptions* global = nullptr;
  std::string action;  // jobs | show | retry | cancel | pause | resume | suppress-list | suppress-add | suppress-remove
  std::optional<std::string> state;  // jobs
  std::optional<int> limit;
  std::optional<std::string> after;
  std::string ref;  // show, retry, cancel
  bool body = false;  // show
  bool all = false;   // retry
  std::string address;  // suppress add|remove
};
// The admin queue-control commands (admin_cmd.cpp): jobs, show, retry, cancel, pause, resume,
// suppress list|add|remove.
std::vector<Subcommand> setup_admin(CLI::App& app, const GlobalOptions& global);
int run_admin(const AdminOptions& options);

struct DkimOptions {
  const GlobalOptions* global = nullptr;
  std::string domain;
  std::string selector;
  std::string dir = ".";
  int bits = 2048;
  std::string algorithm = "rsa";  // rsa | ed25519
};
// `dkim keygen`: a private key on disk and the DNS TXT record to publish (no server involved).
Subcommand setup_dkim(CLI::App& app, const GlobalOptions& global);
int run_dkim_keygen(const DkimOptions& options);

struct DomainOptions {
  const GlobalOptions* global = nullptr;
  std::string domain;
};
// `domain check DOMAIN`: the sending-domain check of the admin API; exit 1 when mail would fail.
Subcommand setup_domain(CLI::App& app, const GlobalOptions& global);
int run_domain_check(const DomainOptions& options);

struct TopOptions {
  const GlobalOptions* global = nullptr;
  double interval_s = 1;
  std::int64_t count = 0;  // refreshes before exiting; 0 = until 'q' or Ctrl-C
  int failures = 5;        // latest failed jobs shown
  bool plain = false;      // key=value lines even on a terminal
};
// `top`: the live queue view (top_cmd.cpp; screen in terminal.cpp, text in top_view.cpp).
Subcommand setup_top(CLI::App& app, const GlobalOptions& global);
int run_top(const TopOptions& options);

// `completion bash`: a bash completion script generated from `app`'s commands and options.
Subcommand setup_completion(CLI::App& app);
// `man` (hidden): the manual page, in roff, generated from `app` and its help texts.
Subcommand setup_man(CLI::App& app);
// The help texts that make --help a manual: the main footer (examples, environment, exit
// status) and examples for the subcommands that exist. Call after every setup_x.
void add_help_texts(CLI::App& app);

}  // namespace websmtp::ctl
