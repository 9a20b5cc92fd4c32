# xtrail: `make demo` runs the whole chain once; `make test` runs the tests.
# Both install what they lack (Debian packages, as root).
GO      ?= go
BIN     := bin/xtrail
PKGS    := ./...
FUZZTIME ?= 10s
# make install (scripts/install.sh says what goes where)
PREFIX        ?= /usr/local
SYSCONFDIR    ?= /etc
LOCALSTATEDIR ?= /var
DESTDIR       ?=

.PHONY: all build generate check-generate test test-unit fuzz-smoke fuzz bench demo lint install clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/xtrail

# Rebuild the BPF object and its Go bindings (committed; `go build` needs no clang).
generate:
	scripts/deps.sh generate
	cd pkg/dataplane && $(GO) generate ./...
	cd internal/trafficgen && $(GO) generate ./...

# CI: the committed bindings must be what `make generate` produces.
check-generate: generate
	git diff --exit-code -- pkg/dataplane/ internal/trafficgen/ || { echo "generated BPF bindings are stale: run make generate and commit"; exit 1; }

test:
	scripts/deps.sh test
	scripts/test.sh

fuzz-smoke:
	scripts/fuzz.sh $(FUZZTIME)

# Long fuzzing, not part of `make test`.
fuzz:
	scripts/fuzz.sh 10m

bench: build
	scripts/deps.sh bench
	scripts/bench.sh

demo: build
	scripts/deps.sh demo
	scripts/demo.sh

install: build
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" SYSCONFDIR="$(SYSCONFDIR)" LOCALSTATEDIR="$(LOCALSTATEDIR)" \
		scripts/install.sh $(BIN)

lint:
	scripts/checkfiles.sh
	scripts/lint-scripts.sh
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt: $$out"; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

clean:
	rm -rf bin
