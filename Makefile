# Thin entry points. `make run` and `make test` install what is missing (Debian packages,
# as root), build, and run. Everything real lives in CMake.
SHELL := /bin/bash
JOBS  ?= $(shell nproc)

# Build and run dependencies (all from Debian 12).
DEPS := build-essential cmake pkg-config libpistache-dev libcli11-dev nlohmann-json3-dev \
        libpoco-dev libspdlog-dev libgtest-dev libsqlite3-dev libexpected-dev \
        libgoogle-perftools-dev libidn2-dev
# Test peers and tools.
TEST_DEPS := python3 python3-aiosmtpd curl postfix openssl python3-jwt python3-cryptography chromium \
             python3-websocket python3-dkim
# Benchmarks: Postfix's smtp-sink/smtp-source (the postfix service is never started) and wrk.
BENCH_DEPS := postfix wrk

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

clean:
	rm -rf build
