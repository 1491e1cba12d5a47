#include "cli_doc.hpp"

#include <algorithm>

#include <CLI/CLI.hpp>

#include "commands.hpp"

namespace websmtp::ctl {
namespace {

bool is_path_option(const CLI::Option& option, const std::string& type_name) {
  for (const char* word : {"FILE", "DIR", "PATH"}) {
    if (type_name.find(word) != std::string::npos) return true;
  }
  const auto& longs = option.get_lnames();
  return std::any_of(longs.begin(), longs.end(), [](const std::string& name) {
    return name == "dir" || (name.size() > 5 && name.compare(name.size() - 5, 5, "-file") == 0);
  });
}

OptionDoc describe_option(const CLI::Option& option) {
  OptionDoc doc;
  doc.positional = option.nonpositional() == false;
  if (doc.positional) {
    doc.names.push_back(option.get_name(true));
  } else {
    for (const auto& name : option.get_lnames()) doc.names.push_back("--" + name);
    for (const auto& name : option.get_snames()) doc.names.push_back("-" + name);
  }
  doc.takes_value = option.get_expected_max() > 0;  // flags expect 0 values
  doc.required = option.get_required();
  doc.type_name = doc.takes_value ? option.get_type_name() : std::string();
  doc.takes_path = doc.takes_value && is_path_option(option, doc.type_name);
  // CLI11 appends each check's description to the type name; IsMember's is "{a,b,c}".
  if (auto open = doc.type_name.find(":{"); open != std::string::npos) {
    auto close = doc.type_name.find('}', open);
    std::string list = doc.type_name.substr(open + 2, close == std::string::npos ? std::string::npos : close - open - 2);
    for (std::size_t at = 0; at <= list.size();) {
      std::size_t comma = std::min(list.find(',', at), list.size());
      if (comma > at) doc.choices.push_back(list.substr(at, comma - at));
      at = comma + 1;
    }
  }
  doc.description = option.get_description();
  doc.default_value = option.get_default_str();
  doc.envname = option.get_envname();
  return doc;
}

void describe(const CLI::App& app, std::vector<std::string> path, std::vector<CommandDoc>& out) {
  CommandDoc doc;
  doc.path = path;
  doc.description = app.get_description();
  doc.footer = app.get_footer();
  for (const auto* option : app.get_options()) {
    if (option->get_group().empty()) continue;  // hidden
    doc.options.push_back(describe_option(*option));
  }
  const auto subcommands = app.get_subcommands([](const CLI::App* sub) { return !sub->get_group().empty(); });
  for (const auto* sub : subcommands) doc.subcommands.push_back(sub->get_name());
  out.push_back(std::move(doc));
  for (const auto* sub : subcommands) {
    path.push_back(sub->get_name());
    describe(*sub, path, out);
    path.pop_back();
  }
}

constexpr const char* kExamples =
    "  websmtpctl send --from alice@example.org --to bob@example.net --subject Hi --body 'Hello'\n"
    "  echo 'Hello' | websmtpctl send --from alice@example.org --to bob@example.net --subject Hi --wait\n"
    "  websmtpctl status 0b0e3c8e-5d7a-4bb8-9c55-2a2d4d0b7f41 --json\n"
    "  websmtpctl queue\n"
    "  websmtpctl top\n"
    "  websmtpctl jobs --state failed --limit 10\n"
    "  websmtpctl pause; websmtpctl resume\n"
    "  websmtpctl keys create --name contact-form --publishable --origin https://www.example.org\n"
    "  websmtpctl dkim keygen --domain example.org --selector s2025 --dir /etc/websmtp/dkim\n"
    "  source <(websmtpctl completion bash)";

constexpr const char* kEnvironment =
    "  WEBSMTP_URL          --server: the public API (default http://127.0.0.1:8080)\n"
    "  WEBSMTP_ADMIN_URL    --admin: the admin API (default http://127.0.0.1:8081)\n"
    "  WEBSMTP_API_KEY      --api-key: the credential for the public API\n"
    "  WEBSMTP_ADMIN_TOKEN  --admin-token: websmtpd's ADMIN_TOKEN, for the admin API\n"
    "  An option on the command line wins over its variable.";

constexpr const char* kExitStatus =
    "  0  success\n"
    "  1  the server refused the request, a job failed, or a wait timed out\n"
    "  2  usage: bad arguments, an unreadable input file, a bad URL\n"
    "  3  cannot connect to the server, or no answer in time";

// Examples for the subcommands that exist in this build, by path; other branches add commands,
// and a command without an entry here simply has none.
struct CommandExample {
  std::vector<std::string> path;
  const char* text;
};
const std::vector<CommandExample>& command_examples() {
  static const std::vector<CommandExample> examples = {
      {{"send"},
       "Examples:\n"
       "  websmtpctl send --from 'Alice <alice@example.org>' --to bob@example.net --subject Hi --body Hello\n"
       "  websmtpctl send --from alice@example.org --to bob@example.net --subject Report --body-file r.txt --wait\n"
       "Prints the ref (with --json the server's answer). With --wait, exits 1 when a recipient failed."},
      {{"status"},
       "Examples:\n"
       "  websmtpctl status REF\n"
       "  websmtpctl status REF --wait --wait-timeout 300\n"
       "With --wait, exits 0 once every recipient is delivered, 1 when one failed or the wait timed out."},
      {{"queue"}, "Example:\n  websmtpctl --admin http://127.0.0.1:8081 queue --json"},
      {{"keys", "create"},
       "Examples:\n"
       "  websmtpctl keys create --name billing --sender '*@billing.example.org' --rate-per-minute 60\n"
       "  websmtpctl keys create --name contact --publishable --origin https://www.example.org \\\n"
       "      --recipient owner@example.org"},
      {{"dkim", "keygen"}, "Example:\n  websmtpctl dkim keygen --domain example.org --selector s2025 --dir /etc/websmtp/dkim"},
      {{"jobs"},
       "Examples:\n"
       "  websmtpctl jobs --state deferred --limit 20\n"
       "  websmtpctl jobs --state failed --json"},
      {{"show"}, "Example:\n  websmtpctl show REF --body"},
      {{"retry"},
       "Examples:\n"
       "  websmtpctl retry REF\n"
       "  websmtpctl retry --all"},
      {{"suppress", "add"}, "Example:\n  websmtpctl suppress add nobody@example.net"},
      {{"completion", "bash"},
       "Examples:\n"
       "  source <(websmtpctl completion bash)\n"
       "  websmtpctl completion bash > /etc/bash_completion.d/websmtpctl"},
  };
  return examples;
}

CLI::App* find_command(CLI::App& root, const std::vector<std::string>& path) {
  CLI::App* app = &root;
  for (const auto& name : path) {
    // get_subcommand(name) throws for a missing one; a missing one is expected here.
    const auto found = app->get_subcommands([&name](CLI::App* sub) { return sub->get_name() == name; });
    if (found.empty()) return nullptr;
    app = found.front();
  }
  return app;
}

}  // namespace

std::vector<CommandDoc> describe_commands(const CLI::App& root) {
  std::vector<CommandDoc> out;
  describe(root, {}, out);
  return out;
}

const std::vector<HelpSection>& manual_sections() {
  static const std::vector<HelpSection> sections = {
      {"EXAMPLES", kExamples}, {"ENVIRONMENT", kEnvironment}, {"EXIT STATUS", kExitStatus}};
  return sections;
}

void add_help_texts(CLI::App& app) {
  std::string footer;
  for (const auto& section : manual_sections()) {
    std::string title = section.title;
    std::transform(title.begin() + 1, title.end(), title.begin() + 1, [](char c) { return c == ' ' ? ' ' : c | 0x20; });
    footer += (footer.empty() ? "" : "\n\n") + title + ":\n" + section.text;
  }
  footer += "\n\nRun 'websmtpctl COMMAND --help' for a command's options; 'man websmtpctl' has them all.";
  app.footer(footer);
  for (const auto& example : command_examples()) {
    CLI::App* command = find_command(app, example.path);
    if (command == nullptr) continue;
    // A command's own footer (usage notes) stays first; the examples follow it.
    const std::string own = command->get_footer();
    command->footer(own.empty() ? std::string(example.text) : own + "\n" + example.text);
  }
  // A command's --help lists its own options only: say which global ones it also takes.
  const std::string globals =
      "Global options (before or after the command): --json, --server URL, --admin URL, --api-key KEY,\n"
      "--admin-token TOKEN, --timeout SECONDS; see 'websmtpctl --help'.";
  std::vector<CLI::App*> pending = app.get_subcommands([](CLI::App*) { return true; });
  while (!pending.empty()) {
    CLI::App* command = pending.back();
    pending.pop_back();
    const std::string own = command->get_footer();
    command->footer(own.empty() ? globals : own + "\n\n" + globals);
    for (auto* sub : command->get_subcommands([](CLI::App*) { return true; })) pending.push_back(sub);
  }
}

}  // namespace websmtp::ctl
