// `websmtpctl send`: build the POST /mail/send request from options, files or stdin, print
// the ref (or the JSON answer), and optionally wait for delivery like `status --wait`.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <memory>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "output.hpp"
#include "websmtp/common/text.hpp"

namespace websmtp::ctl {
namespace {

constexpr const char* kStdinPath = "-";

// What the user typed went wrong: print it and exit with kExitUsage.
struct UsageError {
  std::string message;
};

std::string read_stdin() {
  std::string text{std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>()};
  if (std::cin.bad()) throw UsageError{"cannot read the message from stdin"};
  return text;
}

std::string read_file(const std::string& option, const std::string& path) {
  if (path == kStdinPath) return read_stdin();
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) throw UsageError{"cannot read " + option + " " + path + ": " + std::strerror(errno)};
  std::string text;
  char buffer[8192];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, file.get())) > 0) text.append(buffer, n);
  // A directory opens fine on Linux and fails here with EISDIR.
  if (std::ferror(file.get()) != 0)
    throw UsageError{"cannot read " + option + " " + path + ": " + std::strerror(errno)};
  return text;
}

std::string trim(std::string_view text) {
  const auto begin = text.find_first_not_of(" \t");
  if (begin == std::string_view::npos) return {};
  const auto end = text.find_last_not_of(" \t");
  return std::string(text.substr(begin, end - begin + 1));
}

// "Name: value" -> {"Name": "value"}. The server validates names and values too; checking
// the shape here turns a typo into a usage error instead of a round trip.
nlohmann::json parse_headers(const std::vector<std::string>& lines) {
  nlohmann::json headers = nlohmann::json::object();
  std::vector<std::string> seen;
  for (const auto& line : lines) {
    const auto colon = line.find(':');
    const std::string name = colon == std::string::npos ? std::string{} : trim(std::string_view(line).substr(0, colon));
    const bool name_ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      const auto u = static_cast<unsigned char>(c);
      return u > 0x20 && u < 0x7f && c != ':';
    });
    if (!name_ok) throw UsageError{"--header expects 'Name: value', got '" + line + "'"};
    for (const auto& other : seen) {
      if (iequals(other, name)) throw UsageError{"--header " + name + " is given twice"};
    }
    seen.push_back(name);
    headers[name] = trim(std::string_view(line).substr(colon + 1));
  }
  return headers;
}

nlohmann::json build_request(const SendOptions& o) {
  nlohmann::json request = {{"from", o.from}, {"to", o.to}, {"subject", o.subject}};
  if (!o.cc.empty()) request["cc"] = o.cc;
  if (!o.bcc.empty()) request["bcc"] = o.bcc;
  if (o.reply_to) request["reply_to"] = *o.reply_to;

  if (o.body_file && o.html_file && *o.body_file == kStdinPath && *o.html_file == kStdinPath) {
    throw UsageError{"--body-file - and --html-file - cannot both read stdin"};
  }
  if (o.body) request["body"] = *o.body;
  if (o.body_file) request["body"] = read_file("--body-file", *o.body_file);
  if (o.html) request["html"] = *o.html;
  if (o.html_file) request["html"] = read_file("--html-file", *o.html_file);
  if (!request.contains("body") && !request.contains("html")) {
    if (stdin_is_terminal()) print_error("reading the message body from stdin until EOF (Ctrl-D)");
    request["body"] = read_stdin();
  }

  if (!o.headers.empty()) request["headers"] = parse_headers(o.headers);
  return request;
}

}  // namespace

Subcommand setup_send(CLI::App& app, const GlobalOptions& global) {
  auto options = std::make_shared<SendOptions>();
  options->global = &global;
  auto* sub = app.add_subcommand("send", "Submit a message; prints its ref");
  sub->footer("Without --body, --body-file, --html or --html-file the text body is read from stdin.");

  // allow_extra_args(false): each --to takes one value, so "--to a b" is an error, not two.
  sub->add_option("--from", options->from, "Sender, e.g. 'Alice <alice@example.org>'")->type_name("ADDR")->required();
  sub->add_option("--to", options->to, "Recipient (repeatable)")
      ->type_name("ADDR")
      ->required()
      ->allow_extra_args(false);
  sub->add_option("--cc", options->cc, "Copy recipient (repeatable)")->type_name("ADDR")->allow_extra_args(false);
  sub->add_option("--bcc", options->bcc, "Blind copy recipient (repeatable)")
      ->type_name("ADDR")
      ->allow_extra_args(false);
  sub->add_option("--reply-to", options->reply_to, "Reply-To address")->type_name("ADDR");
  sub->add_option("--subject", options->subject, "Subject (may be empty)")->type_name("TEXT")->required();
  auto* body = sub->add_option("--body", options->body, "Text body");
  auto* body_file = sub->add_option("--body-file", options->body_file, "Read the text body from a file ('-': stdin)")
                        ->type_name("FILE");
  body->excludes(body_file);
  auto* html = sub->add_option("--html", options->html, "HTML body");
  auto* html_file = sub->add_option("--html-file", options->html_file, "Read the HTML body from a file ('-': stdin)")
                        ->type_name("FILE");
  html->excludes(html_file);
  sub->add_option("--header", options->headers, "Extra header 'Name: value' (repeatable)")
      ->type_name("'NAME: VALUE'")
      ->allow_extra_args(false);
  sub->add_option("--idempotency-key", options->idempotency_key, "Resubmitting with the same key returns the same ref")
      ->type_name("KEY");
  sub->add_flag("--wait", options->wait, "Wait until every recipient is delivered or failed");
  auto* wait_timeout = sub->add_option("--wait-timeout", options->wait_timeout_s, "Give up waiting after SECONDS")
                           ->type_name("SECONDS")
                           ->capture_default_str();
  check_seconds(*wait_timeout, 0, 7 * 24 * 3600);

  return {sub, [options] { return run_send(*options); }};
}

int run_send(const SendOptions& options) {
  const GlobalOptions& global = *options.global;
  auto client = make_client(global, global.server_url);
  if (!client) return kExitUsage;

  std::vector<std::pair<std::string, std::string>> headers;
  if (options.idempotency_key) {
    const auto& key = *options.idempotency_key;
    const bool printable = std::all_of(key.begin(), key.end(), [](char c) { return c >= 0x20 && c <= 0x7e; });
    if (key.empty() || key.size() > 255 || !printable) {
      print_error("--idempotency-key must be 1 to 255 printable ASCII characters");
      return kExitUsage;
    }
    headers.emplace_back("Idempotency-Key", key);
  }

  std::string body;
  try {
    body = build_request(options).dump();
  } catch (const UsageError& e) {
    print_error(e.message);
    return kExitUsage;
  } catch (const nlohmann::json::type_error&) {
    // dump() refuses invalid UTF-8; silently replacing bytes would change the message.
    print_error("the message is not valid UTF-8 text (check the encoding of the body or its file)");
    return kExitUsage;
  }

  const auto result = client->post_json("/mail/send", body, headers);
  if (!result) return report_failure(result.error(), client->base());
  const auto& response = result.value();
  if (response.status < 200 || response.status > 299) return report_refusal(response);

  const auto answer = parse_json_object(response.body);
  const std::string ref = answer ? json_string(*answer, "ref") : std::string{};
  if (ref.empty()) return report_unexpected(response);

  if (global.json) {
    print_json_answer(response);
  } else {
    std::cout << ref << '\n' << std::flush;  // flushed: a script may read it while we wait
  }
  if (response.status == 200 && options.idempotency_key && stderr_is_terminal()) {
    print_error("this idempotency key was used before: that is the first request's ref");
  }

  if (!options.wait) return kExitOk;
  return show_status(*client, ref, global.json, /*wait=*/true, options.wait_timeout_s);
}

}  // namespace websmtp::ctl
