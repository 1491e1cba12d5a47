// `websmtpctl man` (hidden): writes the manual page websmtpctl(1) in roff, generated from the
// CLI11 app: every command's description, options, defaults, environment variables and
// footer, then the manual sections of cli_doc.cpp. The build runs it to make websmtpctl.1, so
// the page always matches --help.
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli_doc.hpp"
#include "commands.hpp"
#include "version.hpp"

namespace websmtp::ctl {
namespace {

// Text for roff: backslashes escaped, and a line that would start with a control character
// ('.' or '\'') is protected with the zero-width \&.
std::string roff_text(const std::string& text) {
  std::string out;
  bool line_start = true;
  for (const char c : text) {
    if (line_start && (c == '.' || c == '\'')) out += "\\&";
    if (c == '\\') {
      out += "\\e";
    } else {
      out += c;
    }
    line_start = c == '\n';
  }
  return out;
}

// Option names and command words: hyphens as \- so that they can be searched and copied.
std::string roff_word(const std::string& word) {
  std::string out;
  for (const char c : roff_text(word)) {
    if (c == '-') {
      out += "\\-";
    } else {
      out += c;
    }
  }
  return out;
}

std::string option_entry(const OptionDoc& option) {
  std::string head;
  for (const auto& name : option.names) {
    if (!head.empty()) head += ", ";
    head += option.positional ? "\\fI" + roff_word(name) + "\\fR" : "\\fB" + roff_word(name) + "\\fR";
  }
  if (option.takes_value && !option.positional && !option.type_name.empty()) {
    head += " \\fI" + roff_word(option.type_name) + "\\fR";
  }
  std::string text = option.description;
  std::string notes;
  if (option.required && !option.positional) notes += "required";
  if (!option.default_value.empty()) notes += std::string(notes.empty() ? "" : "; ") + "default: " + option.default_value;
  if (!option.envname.empty()) notes += std::string(notes.empty() ? "" : "; ") + "environment: " + option.envname;
  if (!notes.empty()) text += " (" + notes + ")";
  return ".TP\n" + head + "\n" + roff_text(text) + "\n";
}

std::string preformatted(const std::string& text) { return ".PP\n.nf\n" + roff_text(text) + "\n.fi\n"; }

std::string synopsis(const CommandDoc& command) {
  std::string out = "\\fBwebsmtpctl";
  for (const auto& word : command.path) out += " " + roff_word(word);
  out += "\\fR";
  if (!command.subcommands.empty()) out += " \\fICOMMAND\\fR";
  bool has_options = false;
  for (const auto& option : command.options) {
    if (option.positional) {
      out += " " + std::string(option.required ? "" : "[") + "\\fI" + roff_word(option.names.front()) + "\\fR" +
             (option.required ? "" : "]");
    } else {
      has_options = true;
    }
  }
  if (has_options) out += " [\\fIOPTIONS\\fR]";
  return out;
}

std::string manual(const CLI::App& root) {
  const auto commands = describe_commands(root);
  const CommandDoc& program = commands.front();
  std::string summary = program.description;
  while (!summary.empty() && (summary.back() == '.' || summary.back() == '\n')) summary.pop_back();

  std::string out = ".TH WEBSMTPCTL 1 \"\" \"websmtpctl " + std::string(kWebsmtpctlVersion) +
                    "\" \"User Commands\"\n"
                    ".SH NAME\n"
                    "websmtpctl \\- " +
                    roff_text(summary) +
                    "\n"
                    ".SH SYNOPSIS\n"
                    "\\fBwebsmtpctl\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGUMENTS\\fR]\n"
                    ".SH DESCRIPTION\n" +
                    roff_text(program.description) +
                    "\n.PP\n"
                    "It talks HTTP to websmtpd: the public API for sending and status, the admin API (loopback "
                    "only by default) for the queue, keys and the rest. Global options may come before or after "
                    "the command.\n"
                    ".SH GLOBAL OPTIONS\n";
  for (const auto& option : program.options) out += option_entry(option);

  out += ".SH COMMANDS\n";
  for (auto it = commands.begin() + 1; it != commands.end(); ++it) {
    out += ".SS \"" + synopsis(*it) + "\"\n" + roff_text(it->description) + "\n";
    if (!it->subcommands.empty()) {
      std::string list;
      for (const auto& s : it->subcommands) list += (list.empty() ? "" : ", ") + roff_word(s);
      out += ".PP\nCommands: " + list + ".\n";
    }
    for (const auto& option : it->options) {
      // -h/--help is everywhere; GLOBAL OPTIONS says so once.
      if (option.names.front() != "--help") out += option_entry(option);
    }
    if (!it->footer.empty()) out += preformatted(it->footer);
  }

  for (const auto& section : manual_sections()) {
    out += ".SH " + std::string(section.title) + "\n" + preformatted(section.text);
  }
  out += ".SH SEE ALSO\n.BR websmtpd (1)\n";
  return out;
}

}  // namespace

Subcommand setup_man(CLI::App& app) {
  auto* man = app.add_subcommand("man", "Print the manual page websmtpctl(1) in roff");
  man->group("");  // hidden: the build uses it, users read `man websmtpctl`
  const CLI::App* root = &app;
  return {man, [root] {
            std::cout << manual(*root) << std::flush;
            return std::cout ? kExitOk : kExitRefused;
          }};
}

}  // namespace websmtp::ctl
