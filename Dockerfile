# vmrunner container image: one QEMU VM per container, vmrunner as PID 1.
#
#   docker build -t vmrunner .
#   docker run --rm -it --device /dev/kvm -p 2222:2222 -v vm:/data -e BOOT_FROM=/data/disk.qcow2 vmrunner
#
# Nothing here names an architecture: built on (or with BuildKit's
# --platform for) linux/amd64 or linux/arm64, the image runs guests of its
# own architecture with KVM (qemu-system-x86 and OVMF, or qemu-system-arm
# and AAVMF).
# FOREIGN_GUESTS=1 adds the other architecture's QEMU and firmware, for
# ARCH=aarch64 guests on an x86_64 host (or x86_64 ones on arm64) under TCG.
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
# GOARCH is this stage's platform, the image's: no FROM --platform=$BUILDPLATFORM
# cross build, since the classic builder (Debian's docker.io) refuses it
# ("failed to parse platform"); BuildKit's --platform linux/arm64 on an x86_64
# machine runs this stage under qemu-user (docs/container.md).
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
# The image's own architecture's QEMU and firmware: qemu-system-x86 brings
# SeaBIOS, ovmf is UEFI and Secure Boot; on arm64 qemu-system-arm runs
# qemu-system-aarch64 and qemu-efi-aarch64 is AAVMF. ipxe-qemu is the NICs'
# option ROMs (virtio-net needs them, and a Redfish Pxe boot runs them),
# named since QEMU only recommends it; qemu-utils is qemu-img; swtpm
# emulates the TPM (TPM=1, and TPM=auto with BOOT_MODE=secure).
# Translations and manuals are left out, as in Debian's slim images (QEMU's
# dependencies would bring over 50 MB of translations).
ARG FOREIGN_GUESTS=0
RUN x86="qemu-system-x86 ovmf" arm="qemu-system-arm qemu-efi-aarch64" && \
    case "$(dpkg --print-architecture)" in \
        amd64) qemu="$x86" foreign="$arm" ;; \
        arm64) qemu="$arm" foreign="$x86" ;; \
        *) echo "vmrunner runs x86_64 and aarch64 guests: no QEMU chosen for $(dpkg --print-architecture)" >&2; exit 1 ;; \
    esac && \
    if [ "$FOREIGN_GUESTS" = 1 ]; then qemu="$qemu $foreign"; fi && \
    printf '%s\n' 'path-exclude=/usr/share/locale/*' 'path-exclude=/usr/share/man/*' \
        'path-exclude=/usr/share/info/*' 'path-exclude=/usr/share/doc/*' \
        'path-include=/usr/share/doc/*/copyright' >/etc/dpkg/dpkg.cfg.d/vmrunner-slim && \
    apt-get update && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        $qemu ipxe-qemu qemu-utils swtpm && \
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
