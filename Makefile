# xdpflow. `sudo make demo` runs the probe on a traffic mix and checks its export;
# `sudo make test` runs every test (the kernel tests need root).

GO           ?= go
BPF_CLANG    ?= clang-19
CLANG_FORMAT ?= clang-format-19
# Kernel UAPI headers live in the multiarch include dir on Debian.
BPF_CFLAGS   ?= -O2 -g -Wall -Werror -I/usr/include/$(shell uname -m)-linux-gnu
export BPF_CLANG BPF_CFLAGS

BENCH_TIME ?= 2000000x

.PHONY: all build generate check-generate test test-deploy fuzz bench bench-go bench-peers bench-collector demo lint fmt clean

all: build

## build: compile every package and the commands into bin/
# Static binaries: the probe drops its capabilities from every thread,
# which cgo's threads would not allow.
build:
	$(GO) build ./...
	CGO_ENABLED=0 $(GO) build -o bin/xdpflow-probe ./probe
	CGO_ENABLED=0 $(GO) build -o bin/xdpflow-collector ./collector

## generate: rebuild the BPF objects and their Go bindings (clang), and the protobuf Go (protoc)
generate:
	$(GO) generate ./bpf/... ./schemas/...

## check-generate: fail if the committed BPF objects or protobuf Go differ from their sources
check-generate: generate
	@git diff --exit-code --stat -- 'bpf/*_bpfel.go' 'bpf/*_bpfel.o' 'schemas/*.pb.go' || { \
	  echo "bpf/ or schemas/: the committed generated files do not match their sources: run 'make generate' and commit"; exit 1; }

## test: every test, on the real kernel (run as root)
test:
	$(GO) test -count=1 ./...

## test-deploy: deploy/ for real: the systemd units started under systemd in a debootstrap root (systemd-nspawn; cached in /var/cache/xdpflow-deploy-root), traffic counted exactly through restarts and kill -9; the images built with podman (root; Debian packages debootstrap, systemd-container, podman)
test-deploy: build
	XDPFLOW_DEPLOY_SYSTEMD=1 XDPFLOW_DEPLOY_IMAGE=1 $(GO) test -count=1 -v -timeout 20m -run 'TestSystemdBoot|TestImage' ./deploy/

## fuzz: the collector's decode path under Go's fuzzer for FUZZ_TIME (CI runs it; the corpus in testdata/ runs in every `make test`)
# Minimizing each new input for up to 10 runs, not the 60 s default (or
# 5 s): with longer, 30 s of fuzzing ran 190 k inputs and found 13 new
# ones, most of the time spent minimizing; with 10x, 500 k and 114.
FUZZ_TIME ?= 60s
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZ_TIME) -fuzzminimizetime 10x ./collector/decode/

## bench: the datapath table of docs/benchmarks.md: every datapath benchmark (BPF_PROG_TEST_RUN) against the empty program's floor, BENCH_ROUNDS processes of BENCH_TIME per row, medians of in-process differences and ratios (root; ~7 minutes a round on the project's VM; BPFBENCH_FLAGS adds flags, e.g. --raw DIR); the raw go test: bench-go
# The table, not the raw output, is the target: an ns/pkt figure means
# something only next to the floor measured in the same process.
BENCH_ROUNDS ?= 5
bench:
	@$(GO) run ./internal/cmd/bpfbench --rounds $(BENCH_ROUNDS) --benchtime $(BENCH_TIME) $(BPFBENCH_FLAGS)

## bench-go: package bpf's benchmarks once, raw go test output (BENCH ?= . selects them)
BENCH ?= .
bench-go:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -benchtime $(BENCH_TIME) ./bpf/

## bench-peers: CPU per packet above an empty XDP_DROP program, and accuracy: xdpflow-probe, softflowd and pmacctd on the same veth and traffic (root, 2 CPUs, ~7 minutes; Debian's softflowd and pmacct, each skipped with a message if missing: nothing is installed); see docs/benchmarks.md
bench-peers: build
	$(GO) run ./internal/cmd/peerbench --probe bin/xdpflow-probe

## bench-collector: xdpflow-collector against goflow2, UDP -> JSON lines (and Kafka), loss-free records/s on 1 core and on all (root; COLLECTORBENCH_FLAGS adds flags); see docs/benchmarks.md
bench-collector: build
	$(GO) run ./internal/cmd/collectorbench --xdpflow-bin bin/xdpflow-collector $(COLLECTORBENCH_FLAGS)

## demo: the probe on a veth in throwaway namespaces, exporting IPFIX; traffic mix; exact check
demo: build
	$(GO) run ./internal/cmd/demo --probe bin/xdpflow-probe

## lint: gofmt, go vet, clang-format
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(CLANG_FORMAT) --dry-run --Werror bpf/*.c bpf/*.h bpf/testdata/*.c

## fmt: format Go and C sources
fmt:
	gofmt -w $$(git ls-files '*.go')
	$(CLANG_FORMAT) -i bpf/*.c bpf/*.h bpf/testdata/*.c

clean:
	rm -rf bin/
