# vmrunner container image: one QEMU VM per container, vmrunner as PID 1.
#
#   docker build -t vmrunner .
#   docker run --rm -it --device /dev/kvm -p 2222:2222 -v vm:/data -e BOOT_FROM=/data/disk.qcow2 vmrunner
#
# The base images are build arguments only so that tests can build this
# same file offline from locally made images (integration/images/build.sh);
# a normal build needs none of them. See docs/container.md.
ARG GO_IMAGE=golang:1.26-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# --- build: one static binary ----------------------------------------------
FROM ${GO_IMAGE} AS build
# Lets `docker image prune --filter label=org.vmrunner.stage=build` remove
# what a builder without BuildKit keeps of this stage.
LABEL org.vmrunner.stage=build
WORKDIR /src
ENV CGO_ENABLED=0
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o /out/vmrunner . && \
    /out/vmrunner --version

# --- noVNC: Debian's web client files, without what the package depends on --
# The novnc package depends on nodejs, Python, numpy and websockify (its own
# proxy); the web console needs only the 1.2 MB of HTML and JavaScript in
# /usr/share/novnc, so they are copied out of this stage.
FROM ${RUNTIME_IMAGE} AS novnc
RUN apt-get update && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends novnc && \
    rm -rf /var/lib/apt/lists/*

# --- runtime: QEMU, qemu-img, UEFI firmware, and vmrunner -------------------
FROM ${RUNTIME_IMAGE}
# qemu-system-x86 brings SeaBIOS; ipxe-qemu the NICs' option ROMs (virtio-net
# needs them, and a Redfish Pxe boot runs them), named since QEMU only
# recommends it; ovmf is UEFI and Secure Boot; qemu-utils is qemu-img; swtpm
# emulates the TPM (TPM=1, and TPM=auto with BOOT_MODE=secure).
# Translations and manuals are left out, as in Debian's slim images (QEMU's
# dependencies would bring over 50 MB of translations).
RUN printf '%s\n' 'path-exclude=/usr/share/locale/*' 'path-exclude=/usr/share/man/*' \
        'path-exclude=/usr/share/info/*' 'path-exclude=/usr/share/doc/*' \
        'path-include=/usr/share/doc/*/copyright' >/etc/dpkg/dpkg.cfg.d/vmrunner-slim && \
    apt-get update && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        qemu-system-x86 ipxe-qemu qemu-utils ovmf swtpm && \
    apt-get clean && \
    rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log /var/cache/debconf/*-old
COPY --from=novnc /usr/share/novnc /usr/share/novnc
COPY --from=novnc /usr/share/doc/novnc/copyright /usr/share/doc/novnc/copyright
COPY --from=build /out/vmrunner /usr/local/bin/vmrunner
# vmrunner stays root (taps, the VM's files) but runs QEMU as this user of
# its own (QEMU_USER), rather than as the nobody other programs share.
RUN useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin vmrunner-qemu

# State (disk overlay, seed, UEFI vars, QMP sockets, serial log) lives in
# DATA_DIR/vms/GUEST_NAME; GUEST_NAME defaults to the container's hostname,
# so give containers a fixed --hostname (or GUEST_NAME) to keep their VM.
ENV DATA_DIR=/data
VOLUME ["/data"]

# SSH (forwarded to the guest's 22), VNC (GRAPHICS=vnc), the web console
# (GRAPHICS=novnc), Redfish, IPMI. Each listens only when its setting asks.
EXPOSE 2222 5900 6080 8443 623/udp

# vmrunner turns SIGTERM into an ACPI power-button press and waits up to
# SHUTDOWN_TIMEOUT (30 s): give `docker stop` more, e.g. `docker stop -t 40`
# or `--stop-timeout 40` on docker run.
STOPSIGNAL SIGTERM

# Healthy while QEMU reports the VM running (QMP query-status).
HEALTHCHECK --interval=10s --timeout=8s --start-period=30s --retries=3 \
    CMD ["vmrunner", "health"]

# PID 1: vmrunner reaps orphans itself and forwards stop signals; no init,
# no shell. Arguments (--dry-run, --show-config, --help, health) pass through.
ENTRYPOINT ["vmrunner"]
