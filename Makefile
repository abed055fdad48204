GO        ?= go
PKGS      := ./...
BENCHTIME ?= 1s

.PHONY: run test lint staticcheck fuzz bench build node-deps screenshots

build:
	$(GO) build -o bin/feathery ./cmd/feathery

## run: the demo — fake Discord + embedded Redis + the gateway, events visible
run:
	@test -x bin/feathery || echo "compiling bin/feathery (the first build takes a minute or two)..."
	@$(GO) build -o bin/feathery ./cmd/feathery
	bin/feathery demo

## test: everything, with the race detector
test: lint node-deps
	$(GO) test -race -count=1 -timeout 25m $(PKGS)

node-deps:
	@if command -v npm >/dev/null 2>&1 && [ -f consumers/node/package.json ]; then \
		cd consumers/node && npm install --no-audit --no-fund --silent; fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## staticcheck: extra static analysis (fetched through the module proxy; not part of make test)
staticcheck:
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)

## fuzz: each fuzz target for FUZZTIME
FUZZTIME ?= 20s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; done

## bench: micro-benchmarks, benchstat-friendly (count=6)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 -benchtime $(BENCHTIME) ./gateway/... ./broker/... ./luascripts/... | tee bench/micro.txt

## screenshots: the dashboard at 1,000 shards (two nodes on the fake Discord), in docs/ (needs chromium)
screenshots:
	FEATHERY_SCREENSHOTS=$(CURDIR)/docs $(GO) test -count=1 -timeout 20m -run '^TestDashboard_Screenshots$$' -v ./cmd/feathery
