# kvsedge — build, run and test targets. `make help` lists them.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
PKGS      := ./...
# The library packages: everything but the end-to-end tests (e2e/) and the
# command line.
LIBS      := ./engine/... ./lsm/... ./serve/... ./ingest/... ./cluster/... ./producer/... ./hwprofiles/... ./internal/...

.PHONY: help build run check test test-short vet race fmt bench clean
.PHONY: release release-test crash fuzz flood soak-pizero bench-mediamtx

help:
	@echo "make build   static binary ./kvsedge (CGO_ENABLED=0)"
	@echo "make run     build and serve on the embedded defaults (data in ./data)"
	@echo "make check   the inner loop, under a minute: build, make vet, unit tests of the library packages (-short)"
	@echo "make test    make vet, then the whole test suite (what CI runs)"
	@echo "make vet     gofmt, go vet, staticcheck and the import rules"
	@echo "make race    the library packages' tests under the race detector (-short)"
	@echo "make bench   benchmarks"
	@echo "make crash   SIGKILL the box 50 times during 4-stream ingest; every PERSISTED fragment must survive (CRASH_CYCLES=n)"
	@echo "make flood   the full-size connection flood: 20,000 idle + 2,000 slow connections during an upload and a camera (issue 13)"
	@echo "make soak-pizero  8 cameras at 2 Mbit/s for 10 minutes under the pi-zero-2w profile: RSS < 256 MiB, no fragment late or lost (issue 14; SOAK_MINUTES=n)"
	@echo "make bench-mediamtx  kvsedge (profiles none, x86-mini; every fragment fsynced) vs MediaMTX recording the same 1, 16, 64 cameras: CPU, RSS, write ratios (issue 14; MEDIAMTX=/path/to/mediamtx, BENCH_CAMERAS, BENCH_ROUNDS)"
	@echo "make fuzz    run every fuzz target for FUZZTIME each (default 60s)"
	@echo "make release static binaries in dist/ for linux amd64, arm64, armv7, armv6, .deb packages (amd64, arm64, armhf) + SHA256SUMS"
	@echo "make release-test  run the linux/arm64 binary under qemu-aarch64-static and call its API"

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o kvsedge .

# KVSEDGE_CONFIG= : the embedded defaults, even where the Debian package
# installed /etc/kvsedge/kvsedge.yaml.
run: build
	KVSEDGE_CONFIG= ./kvsedge serve

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) tool staticcheck $(PKGS)
	$(GO) test -count=1 ./internal/archtest

check:
	$(GO) build $(PKGS)
	$(MAKE) --no-print-directory vet
	$(GO) test -short -count=1 $(LIBS)

test: vet
	$(GO) test -count=1 -timeout 25m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

race:
	$(GO) test -race -short -count=1 $(LIBS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf kvsedge dist

# Release builds: one static binary per board family and a Debian package
# for each Debian architecture (packaging/nfpm.yaml; see packaging/INSTALL.md).
release:
	@mkdir -p dist
	rm -f dist/kvsedge-linux-* dist/kvsedge_*.deb dist/SHA256SUMS
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/kvsedge-linux-amd64 .
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/kvsedge-linux-arm64 .
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/kvsedge-linux-armv7 .
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=6 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/kvsedge-linux-armv6 .
	$(GO) run ./internal/mkdeb -version '$(VERSION)' -out dist \
		amd64=dist/kvsedge-linux-amd64 arm64=dist/kvsedge-linux-arm64 armhf=dist/kvsedge-linux-armv7
	@cd dist && { command -v sha256sum >/dev/null 2>&1 && sha256sum kvsedge-linux-* kvsedge_*.deb || shasum -a 256 kvsedge-linux-* kvsedge_*.deb; } > SHA256SUMS
	@echo
	@printf '%-32s %12s %9s\n' file bytes MiB
	@for f in dist/kvsedge-linux-* dist/kvsedge_*.deb; do wc -c < "$$f" | awk -v n="$${f#dist/}" '{ printf "%-32s %12d %9.2f\n", n, $$1, $$1/1048576 }'; done
	@echo "checksums in dist/SHA256SUMS"

# The linux/arm64 binary served under qemu user emulation (qemu-user-static).
release-test:
	KVSEDGE_TEST_ARMV7=1 $(GO) test -count=1 -run 'TestArm64BinaryUnderQemu' -v ./e2e

# Crash suite: many SIGKILL cycles during multi-stream ingest.
CRASH_CYCLES ?= 50
crash:
	KVSEDGE_CRASH_CYCLES=$(CRASH_CYCLES) $(GO) test -count=1 -timeout 60m -run 'TestCrashSuite' -v ./e2e
	$(GO) test -count=1 -run 'TestCrash' -v ./lsm

# The full-size connection flood (the scaled-down one runs in make test).
flood:
	KVSEDGE_FLOOD_FULL=1 $(GO) test -count=1 -timeout 20m -run 'TestConnectionFloodFullSize' -v ./e2e

# The pi-zero-2w soak (issue 14): 8 cameras at 2 Mbit/s for SOAK_MINUTES.
SOAK_MINUTES ?= 10
soak-pizero:
	KVSEDGE_SOAK_PIZERO=1 KVSEDGE_SOAK_MINUTES=$(SOAK_MINUTES) $(GO) test -count=1 -timeout $$(( $(SOAK_MINUTES) + 10 ))m -run 'TestSoakPiZero' -v ./e2e

# Side by side with MediaMTX (issue 14): the built binary and a MediaMTX
# binary built from its public source (MEDIAMTX; not a dependency of this
# module) record the same simulated cameras, alternating, BENCH_ROUNDS
# rounds of a 15 s warm-up and a 30 s window each (BenchmarkVsMediaMTX).
MEDIAMTX      ?=
BENCH_CAMERAS ?= 1,16,64
BENCH_ROUNDS  ?= 2
bench-mediamtx:
	@test -n "$(MEDIAMTX)" || { echo 'set MEDIAMTX=/path/to/mediamtx (built from github.com/bluenviron/mediamtx)'; exit 1; }
	KVSEDGE_MEDIAMTX=$(MEDIAMTX) KVSEDGE_BENCH_CAMERAS=$(BENCH_CAMERAS) KVSEDGE_BENCH_ROUNDS=$(BENCH_ROUNDS) \
		$(GO) test -count=1 -timeout 90m -run '^$$' -bench 'BenchmarkVsMediaMTX' -benchtime 1x -v ./e2e

# Fuzzing: each target for FUZZTIME.
FUZZTIME ?= 60s
fuzz:
	./scripts/fuzz.sh $(FUZZTIME)
