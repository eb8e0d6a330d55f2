# The two commands of the README: `make run` boots the test guest under
# vmrunner with its HTTP port forwarded; `make test` runs every test.
GUEST := .cache/guest
PORT  ?= 8080

.PHONY: build guest deps test run

build:
	CGO_ENABLED=0 go build -o vmrunner .

deps:
	scripts/test-deps.sh

guest: deps
	integration/guest/build.sh $(GUEST)

test: guest
	gofmt -l $$(git ls-files '*.go') | tee /dev/stderr | (! read)
	go vet ./...
	VMRUNNER_REQUIRE_INTEGRATION=1 VMRUNNER_TEST_GUEST=$(abspath $(GUEST)) go test -race -timeout 80m ./...

run: build guest
	KERNEL=$(GUEST)/vmlinuz INITRD=$(GUEST)/initrd.gz KERNEL_CMDLINE="console=ttyS0 quiet" \
	BOOT_MODE=legacy MEMORY=512 DATA_DIR=$(abspath .cache/state) GUEST_NAME=demo \
	PORT_FWD=$(PORT):80 PORT_FWD_ADDR=127.0.0.1 ./vmrunner
