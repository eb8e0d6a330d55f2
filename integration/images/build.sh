#!/usr/bin/env bash
# build.sh [IMAGE] - build the vmrunner container image from the repository's
# own Dockerfile without any image registry (tests; machines where
# `docker pull` cannot work).
#
#   1. base image    debootstrap --variant=minbase bookworm, `docker import`ed
#                    (stands in for debian:bookworm-slim)
#   2. builder image the base + this machine's Go toolchain (`go env GOROOT`)
#                    + a module cache holding exactly go.sum's modules, with
#                    GOPROXY=off (stands in for golang:1.26-bookworm)
#   3. IMAGE         `docker build` of the unchanged Dockerfile with
#                    --build-arg GO_IMAGE=… --build-arg RUNTIME_IMAGE=…
#
# Idempotent and cached: 1 and 2 are reused while their tag exists (the
# builder's tag names the Go version and go.sum's hash); 3 uses Docker's
# layer cache, so an unchanged tree rebuilds in seconds.
#
# Environment:
#   VMRUNNER_IMAGE          image to build when IMAGE is not given (vmrunner:test)
#   VMRUNNER_IMAGES_CACHE   work folder (REPO/.cache/images)
#   VMRUNNER_IMAGES_REFRESH 1: rebuild the base and builder images
#   DEBOOTSTRAP_MIRROR      Debian mirror (default: the one apt uses here)
#   DOCKERD_LOG             dockerd's log when this script has to start it
#
# Needs root (debootstrap, dockerd). Starts dockerd when no daemon answers and
# leaves it running; the Go tests start and stop their own.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
image=${1:-${VMRUNNER_IMAGE:-vmrunner:test}}
cache=${VMRUNNER_IMAGES_CACHE:-$repo/.cache/images}
suite=bookworm
base_image=vmrunner-local/debian:$suite-minbase

log() { echo "images/build.sh: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}
elapsed() { echo "$((SECONDS - $1))s"; }

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

# The legacy builder is in every Docker (Debian's docker.io has no buildx);
# the Dockerfile needs nothing from BuildKit.
export DOCKER_BUILDKIT=0

# --- the daemon -------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
	command -v dockerd >/dev/null || die "no Docker daemon answers and dockerd is not installed (apt-get install docker.io)"
	dlog=${DOCKERD_LOG:-$cache/dockerd.log}
	log "starting dockerd (log: $dlog)"
	setsid dockerd >"$dlog" 2>&1 </dev/null &
	for _ in $(seq 60); do
		docker info >/dev/null 2>&1 && break
		sleep 1
	done
	docker info >/dev/null 2>&1 || die "dockerd did not come up; see $dlog"
fi

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# --- 1. base image ------------------------------------------------------------
if [[ ${VMRUNNER_IMAGES_REFRESH:-} == 1 ]] || ! have_image "$base_image"; then
	command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
	mirror=${DEBOOTSTRAP_MIRROR:-}
	if [[ -z $mirror ]]; then
		fmt='$(REPO_URI)'
		mirror=$(apt-get indextargets --format "$fmt" "Codename: $suite" 'Identifier: Packages' 2>/dev/null | head -n1 || true)
	fi
	start=$SECONDS
	root=$cache/rootfs
	rm -rf "$root"
	log "debootstrap --variant=minbase $suite ${mirror:-(default mirror)}"
	debootstrap --variant=minbase "$suite" "$root" ${mirror:+"$mirror"} >"$cache/debootstrap.log" 2>&1 ||
		die "debootstrap failed; see $cache/debootstrap.log"
	# Made like Debian's bookworm-slim: no package caches, and no manuals,
	# documentation or translations, now or from later installs.
	[[ -d $root/etc/dpkg/dpkg.cfg.d && -d $root/usr/share/doc ]] || die "debootstrap left no usable tree in $root"
	printf 'path-exclude /usr/share/%s/*\n' doc man groff info lintian linda locale >"$root/etc/dpkg/dpkg.cfg.d/docker"
	echo 'path-include /usr/share/doc/*/copyright' >>"$root/etc/dpkg/dpkg.cfg.d/docker"
	find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
	for d in man groff info lintian linda locale; do
		rm -rf "${root:?}/usr/share/$d"/*
	done
	rm -rf "${root:?}"/var/cache/apt/archives/*.deb "${root:?}"/var/lib/apt/lists/*
	tar --numeric-owner -C "$root" -c . | docker import \
		--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		--change 'CMD ["bash"]' - "$base_image" >/dev/null
	rm -rf "$root"
	log "base image $base_image ready in $(elapsed $start)"
fi

# --- 2. builder image -----------------------------------------------------------
goroot=$(go env GOROOT)
gover=$(go env GOVERSION)
sumhash=$(cat "$repo/go.mod" "$repo/go.sum" | sha256sum | cut -c1-12)
builder_image=vmrunner-local/golang:$gover-$suite-$sumhash
if [[ ${VMRUNNER_IMAGES_REFRESH:-} == 1 ]] || ! have_image "$builder_image"; then
	start=$SECONDS
	ctx=$cache/builder
	rm -rf "$ctx"
	mkdir -p "$ctx"
	# Exactly the modules go.sum names, taken from this machine's module
	# cache first and from the module proxy only for what it lacks.
	log "collecting Go modules for go.sum $sumhash"
	hostcache=$(go env GOMODCACHE)
	(cd "$repo" && GOMODCACHE="$ctx/gomod" GOFLAGS=-modcacherw \
		GOPROXY="file://$hostcache/cache/download,$(go env GOPROXY)" go mod download)
	# The build stage only needs the download cache (zips, go.mod files).
	find "$ctx/gomod" -mindepth 1 -maxdepth 1 ! -name cache -exec rm -rf {} +
	cat >"$ctx/Dockerfile" <<EOF
FROM $base_image
COPY go /usr/local/go
COPY gomod /go/pkg/mod
ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    GOPATH=/go GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod
WORKDIR /go
EOF
	log "building $builder_image (Go toolchain from $goroot)"
	# One tar stream as the build context: no copy of the toolchain on disk.
	gr=$(basename "$goroot")
	tar -c -C "$ctx" Dockerfile gomod -C "$(dirname "$goroot")" \
		--exclude="$gr/test" --exclude="$gr/pkg/obj" --transform "s,^$gr/,go/," "$gr" |
		docker build -q -t "$builder_image" - >"$cache/builder.log" 2>&1 || die "building $builder_image failed; see $cache/builder.log"
	rm -rf "$ctx"
	log "builder image $builder_image ready in $(elapsed $start)"
fi

# --- 3. the image ---------------------------------------------------------------
start=$SECONDS
version=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo dev)
prev=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
log "docker build -t $image (GO_IMAGE=$builder_image RUNTIME_IMAGE=$base_image)"
if ! docker build -t "$image" \
	--build-arg GO_IMAGE="$builder_image" \
	--build-arg RUNTIME_IMAGE="$base_image" \
	--build-arg VERSION="$version" \
	"$repo" >"$cache/build.log" 2>&1; then
	tail -n 40 "$cache/build.log" >&2
	die "docker build failed; full log: $cache/build.log"
fi
# The builder without BuildKit keeps each build's first stage as an
# untagged image. Keep the newest (its layers are the next build's cache)
# and drop older ones, and the image this build replaced.
mapfile -t stale < <(docker image ls -q --filter dangling=true --filter label=org.vmrunner.stage=build | tail -n +2)
if ((${#stale[@]})); then
	docker image rm "${stale[@]}" >/dev/null 2>&1 || true
fi
cur=$(docker image inspect -f '{{.Id}}' "$image")
if [[ -n $prev && $prev != "$cur" ]]; then
	docker image rm "$prev" >/dev/null 2>&1 || true
fi
log "image $image ready in $(elapsed $start): $(docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$image")"
