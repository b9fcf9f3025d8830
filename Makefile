# kvsedge — build, run and test targets. `make help` lists them.
GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
PKGS      := ./...

.PHONY: help build run test test-short vet fmt bench clean

help:
	@echo "make build   static binary ./kvsedge (CGO_ENABLED=0)"
	@echo "make run     build and serve on the embedded defaults (data in ./data)"
	@echo "make test    the whole test suite (what CI runs)"
	@echo "make vet     gofmt check and go vet"
	@echo "make bench   benchmarks"

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o kvsedge .

run: build
	./kvsedge serve

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt needed'; exit 1; }
	$(GO) vet $(PKGS)

test: vet
	$(GO) test -count=1 -timeout 20m $(PKGS)

test-short:
	$(GO) test -short -count=1 $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf kvsedge dist
