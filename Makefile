# Thin entry points. `make run` and `make test` install what is missing (Debian packages,
# as root), build, and run. Everything real lives in CMake.
SHELL := /bin/bash
JOBS  ?= $(shell nproc)

# Build and run dependencies (all from Debian 12).
DEPS := build-essential cmake pkg-config libpistache-dev libcli11-dev nlohmann-json3-dev \
        libpoco-dev libspdlog-dev libgtest-dev libsqlite3-dev libexpected-dev \
        libgoogle-perftools-dev libidn2-dev help2man libpq-dev
# Test peers and tools.
TEST_DEPS := python3 python3-aiosmtpd curl postfix openssl python3-jwt python3-cryptography chromium \
             python3-websocket python3-dkim dnsmasq-base tmux man-db postgresql
# Benchmarks: Postfix's smtp-sink/smtp-source (the postfix service is never started) and wrk.
BENCH_DEPS := postfix wrk
# Fuzzing: clang's libFuzzer (tests/fuzz).
FUZZ_DEPS := clang-14 libfuzzer-14-dev

.PHONY: all deps test-deps bench-deps build run test test-asan test-tsan bench clean

all: build

deps:
	@./packaging/install-deps.sh $(DEPS)

test-deps:
	@./packaging/install-deps.sh $(DEPS) $(TEST_DEPS)

bench-deps:
	@./packaging/install-deps.sh $(DEPS) $(TEST_DEPS) $(BENCH_DEPS)

build: deps
	cmake --preset release -DBUILD_TESTING=OFF >/dev/null
	cmake --build --preset release -j $(JOBS)

# Builds Release and starts websmtpd with the repo's .env (sandbox delivery, ./data store).
run: build
	./build/release/apps/websmtpd/websmtpd

# Builds with tests and runs every unit and integration test.
test: test-deps
	cmake --preset release -DBUILD_TESTING=ON >/dev/null
	cmake --build --preset release -j $(JOBS)
	ctest --preset release -j $(JOBS)

# The suite under AddressSanitizer + UndefinedBehaviorSanitizer.
test-asan: test-deps
	cmake --preset asan >/dev/null
	cmake --build --preset asan -j $(JOBS)
	ctest --preset asan -j $(JOBS)

# Queue, store and other concurrency tests under ThreadSanitizer.
test-tsan: test-deps
	cmake --preset tsan >/dev/null
	cmake --build --preset tsan -j $(JOBS)
	ctest --preset tsan -j $(JOBS)

bench: bench-deps build
	./bench/run.sh

# Builds the libFuzzer targets (clang-14, ASan+UBSan) and runs each for FUZZ_SECONDS, one after
# the other. New inputs go to build/fuzz/corpus/<target> (the seeds in tests/fuzz/corpus stay
# as they are); crashes to build/fuzz/crashes/<target>-crash-*: copy one into
# tests/fuzz/corpus/<target>/ once fixed, so `make test` replays it.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= fuzz_job fuzz_address fuzz_mime fuzz_http
.PHONY: fuzz
fuzz:
	@./packaging/install-deps.sh $(DEPS) $(FUZZ_DEPS)
	cmake --preset fuzz >/dev/null
	cmake --build --preset fuzz -j $(JOBS)
	@mkdir -p build/fuzz/crashes
	@status=0; for t in $(FUZZ_TARGETS); do \
	  case $$t in \
	    fuzz_job) opts="-max_len=16384 -dict=tests/fuzz/json.dict";; \
	    fuzz_address) opts="-max_len=1024";; \
	    fuzz_mime) opts="-max_len=16384";; \
	    fuzz_http) opts="-max_len=8192 -dict=tests/fuzz/http.dict";; \
	  esac; \
	  mkdir -p build/fuzz/corpus/$$t; \
	  echo "== $$t: $(FUZZ_SECONDS) s"; \
	  ./build/fuzz/tests/fuzz/$$t $$opts -max_total_time=$(FUZZ_SECONDS) -timeout=30 -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/crashes/$$t- build/fuzz/corpus/$$t tests/fuzz/corpus/$$t || status=1; \
	done; exit $$status

clean:
	rm -rf build
