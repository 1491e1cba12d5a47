#pragma once
// The command tree of websmtpctl as plain data, read from the CLI11 app itself, so that the
// bash completion (completion_cmd.cpp) and the manual page (man_cmd.cpp) cannot drift from
// what the parser accepts; and the help texts that make --help a manual.
#include <string>
#include <vector>

namespace CLI {
class App;
}  // namespace CLI

namespace websmtp::ctl {

struct OptionDoc {
  std::vector<std::string> names;  // "--server", "-h"; for a positional its name alone
  bool positional = false;
  bool takes_value = false;
  bool takes_path = false;  // its value is a file or directory (completed as one)
  bool required = false;
  std::string type_name;  // "URL", "SECONDS", ...
  // The fixed values its check accepts (CLI::IsMember: "TEXT:{a,b}" in its type name), if any.
  std::vector<std::string> choices;
  std::string description;
  std::string default_value;
  std::string envname;
};

struct CommandDoc {
  std::vector<std::string> path;  // {} for the program itself, {"keys", "create"}
  std::string description;
  std::string footer;
  std::vector<OptionDoc> options;  // its own, in declaration order
  std::vector<std::string> subcommands;
};

// The program first, then every visible subcommand depth-first in declaration order. Hidden
// commands (CLI11 group "") are left out.
std::vector<CommandDoc> describe_commands(const CLI::App& root);

// A section of the manual that is not about one command: EXAMPLES, ENVIRONMENT, EXIT STATUS.
struct HelpSection {
  const char* title;
  const char* text;  // lines joined by '\n', indented by two spaces for examples
};
const std::vector<HelpSection>& manual_sections();

}  // namespace websmtp::ctl
