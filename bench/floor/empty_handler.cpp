// The bench's floor: an empty Pistache handler, run under the same wrk load as websmtpd.
//
// It has websmtpd's HTTP shape and nothing else: a Pistache 0.0.5 Http::Endpoint with the
// same options (2 reactor threads, ReuseAddr|NoDelay, the same request and response size
// limits), the same keep-alive rule, and an answer of the same size class (202 with a small
// JSON body) to any request. Its CPU time per request is what Pistache and the kernel cost on
// this machine; websmtpd's per-request CPU is compared with it.
//
//   empty_handler [PORT_FILE]
// Binds 127.0.0.1:0, prints the bound port on stdout and, when PORT_FILE is given, writes it
// there (written to PORT_FILE.tmp, then renamed, so a reader never sees half a number).
// Runs until SIGTERM or SIGINT.
#include <pistache/endpoint.h>
#include <pistache/http.h>
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <string>

namespace {

using Pistache::Http::ConnectionControl;
namespace Header = Pistache::Http::Header;

class EmptyHandler : public Pistache::Http::Handler {
 public:
  HTTP_PROTOTYPE(EmptyHandler)

  void onRequest(const Pistache::Http::Request& req, Pistache::Http::ResponseWriter rw) override {
    // Pistache 0.0.5 answers "Connection: close" unless told otherwise; websmtpd keeps
    // HTTP/1.1 connections alive unless the client asked to close (http_api.cpp set_connection).
    bool keep = req.version() == Pistache::Http::Version::Http11;
    if (auto c = req.headers().tryGet<Header::Connection>()) keep = c->control() == ConnectionControl::KeepAlive;
    rw.headers().remove<Header::Connection>();
    rw.headers().add<Header::Connection>(keep ? ConnectionControl::KeepAlive : ConnectionControl::Close);
    rw.headers().add<Header::ContentType>(MIME(Application, Json));
    // Same length as websmtpd's answer to /mail/send ({"ref":"<36-char uuid>"}).
    rw.send(Pistache::Http::Code::Accepted, R"({"ref":"00000000-0000-7000-8000-000000000000"})");
  }
};

}  // namespace

int main(int argc, char** argv) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // before Pistache starts its threads
  ::signal(SIGPIPE, SIG_IGN);

  Pistache::Http::Endpoint ep(Pistache::Address("127.0.0.1", Pistache::Port(0)));
  // websmtpd's limits with its default MAX_BODY_BYTES (10 MiB, plus 128 KiB above it so that
  // its own gate answers 413); Pistache's default (4 KiB) would refuse a /mail/batch body.
  ep.init(Pistache::Http::Endpoint::options()
              .threads(2)
              .flags(Pistache::Tcp::Options::ReuseAddr | Pistache::Tcp::Options::NoDelay)
              .maxRequestSize(10 * 1024 * 1024 + 128 * 1024)
              .maxResponseSize(16 * 1024 * 1024));
  ep.setHandler(Pistache::Http::make_handler<EmptyHandler>());
  ep.serveThreaded();

  const std::string port = std::to_string(static_cast<uint16_t>(ep.getPort()));
  std::printf("%s\n", port.c_str());
  std::fflush(stdout);
  if (argc > 1) {
    const std::string path = argv[1];
    {
      std::ofstream out(path + ".tmp", std::ios::trunc);
      out << port << "\n";
    }
    if (std::rename((path + ".tmp").c_str(), path.c_str()) != 0) return 1;
  }

  int sig = 0;
  sigwait(&signals, &sig);
  ep.shutdown();
  return 0;
}
