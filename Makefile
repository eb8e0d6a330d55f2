# The two commands of the README: `make run` boots the test guest under
# vmrunner with its HTTP port forwarded; `make test` runs every test.
GUEST := .cache/guest
# The same guest for ARCH=aarch64, from Debian's arm64 packages.
GUEST_ARM64 := .cache/guest-arm64
# The Debian cloud guest takes minutes to build: cache it per machine, outside
# the work tree, so fresh clones (CI) on the same machine reuse it.
CLOUDGUEST ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/vmrunner/cloudguest
PORT  ?= 8080

.PHONY: build guest guest-arm64 cloudguest deps test run run-arm64 cross

build:
	CGO_ENABLED=0 go build -o vmrunner .

deps:
	scripts/test-deps.sh

guest: deps
	integration/guest/build.sh $(GUEST)

guest-arm64: deps
	integration/guest/build.sh $(GUEST_ARM64) arm64

# vmrunner for arm64 hosts (and its arm64-only code vetted), from here.
cross:
	CGO_ENABLED=0 GOARCH=arm64 go build -o /dev/null .
	CGO_ENABLED=0 GOARCH=arm64 go vet ./...

cloudguest: deps
	integration/cloudguest/build.sh $(CLOUDGUEST)

test: guest guest-arm64 cloudguest cross
	@# gofmt's list goes to a variable, not through tee /dev/stderr: tee
	@# truncates stderr when it is a regular file (CI's log).
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted" >&2; exit 1; fi
	go vet ./...
	@# -parallel 3: the integration tests mostly wait on guests booting
	@# under TCG (load stays 1-4 on 2 cores with 2), not on the CPU.
	VMRUNNER_REQUIRE_INTEGRATION=1 VMRUNNER_TEST_GUEST=$(abspath $(GUEST)) VMRUNNER_TEST_GUEST_ARM64=$(abspath $(GUEST_ARM64)) VMRUNNER_CLOUD_GUEST=$(CLOUDGUEST) go test -race -count=1 -parallel 3 -timeout 80m ./...
	cd deploy/kubernetes/validate && go vet ./... && go test -count=1 ./...

run: build guest
	KERNEL=$(GUEST)/vmlinuz INITRD=$(GUEST)/initrd.gz KERNEL_CMDLINE="console=ttyS0 quiet" \
	BOOT_MODE=legacy MEMORY=512 DATA_DIR=$(abspath .cache/state) GUEST_NAME=demo \
	PORT_FWD=$(PORT):80 PORT_FWD_ADDR=127.0.0.1 ./vmrunner

# The same with the arm64 guest (ARCH=aarch64, under TCG on an x86_64 host).
run-arm64: build guest-arm64
	ARCH=aarch64 KERNEL=$(GUEST_ARM64)/vmlinuz INITRD=$(GUEST_ARM64)/initrd.gz KERNEL_CMDLINE="console=ttyAMA0 quiet" \
	BOOT_MODE=legacy MEMORY=512 DATA_DIR=$(abspath .cache/state) GUEST_NAME=demo-arm64 \
	PORT_FWD=$(PORT):80 PORT_FWD_ADDR=127.0.0.1 ./vmrunner
