#!/bin/bash
# build.sh OUTDIR [ARCH] - build the tiny vmrunner test guest from Debian
# packages, for ARCH amd64 (the default) or arm64.
#
# Output:
#   OUTDIR/vmlinuz    Debian kernel (the version linux-image-ARCH depends on)
#   OUTDIR/initrd.gz  busybox-static initramfs running integration/guest/init
#   OUTDIR/stamp      hash of the recipe + kernel and busybox versions
#
# An arm64 guest's packages come from the same configured archive through
# apt, with arm64 package lists of its own in OUTDIR/.apt: the host's dpkg
# architectures and apt lists stay as they are.
#
# The build is cached: when OUTDIR/stamp matches the current recipe (this
# script, init, acpi-pwrf, udhcpc.script), the kernel package and the
# busybox-static version, nothing is rebuilt. Concurrent calls on the same
# OUTDIR are serialised with flock.
#
# Environment:
#   VMTEST_KERNEL_PKG   kernel package to use instead of the one that
#                       linux-image-ARCH depends on (e.g. linux-image-6.1.0-56-amd64)
#   VMTEST_FORCE=1      rebuild even if the stamp matches
#
# Needs root only when it has to install busybox-static/cpio or run
# apt-get update. Packages come only from the configured apt archive.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
recipe_files=(build.sh init acpi-pwrf udhcpc.script)

# Modules wanted in the guest, in the preferred load order. Dependencies
# (from each .ko's modinfo "depends=") are added automatically in front of
# the module that needs them. Modules that do not exist (or are built in)
# are skipped.
wanted_modules=(
	virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
	failover net_failover virtio_net
	e1000 e1000e
	8139cp 8139too ne2k-pci pcnet32 vmxnet3
	virtio_blk
	scsi_common scsi_mod cdrom sr_mod sd_mod
	libata libahci ahci
	isofs
	button evdev
	virtio_scsi
	9pnet 9pnet_virtio 9p
	fuse virtiofs
	xhci_pci usb_storage
)
# On arm64 the virt machine's power button is a GPIO key when the kernel
# boots with a device tree (no firmware); ACPI's button is built in.
arm64_modules=(gpio_keys)

# Extra insmod arguments. A full scan of a virtio-scsi host probes all 256
# targets (about 11 s under TCG, and poweroff waits for it), so the kernel
# does not scan by itself (scan=manual) and init scans only the first few
# targets through sysfs. libata (AHCI) adds its devices regardless.
# usb-storage waits a second before its host is scanned by default.
declare -A module_args=([scsi_mod]="scan=manual" [usb_storage]="delay_use=0")

log() { echo "build.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[[ ($# -eq 1 || $# -eq 2) && -n $1 ]] || die "usage: $0 OUTDIR [amd64|arm64]"
arch=${2:-amd64}
[[ $arch == amd64 || $arch == arm64 ]] || die "ARCH: amd64 or arm64, not $arch"
mkdir -p "$1"
out=$(cd "$1" && pwd)

apt_get() {
	DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=900 "$@"
}

# foreign: apt and apt-cache options for the guest's packages. The host's
# own architecture needs none; another one gets its package lists in
# OUTDIR/.apt, fetched by `foreign_update` from the configured sources.
foreign=()
if [[ $arch != "$(dpkg --print-architecture)" ]]; then
	foreign=(-o "Dir::State::Lists=$out/.apt/lists" -o "Dir::Cache=$out/.apt/cache"
		-o "APT::Architecture=$arch" -o "APT::Architectures::=$arch" -o Debug::NoLocking=1
		-o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
		-o "Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false"
		-o "Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false")
fi
foreign_update() {
	mkdir -p "$out/.apt/lists/partial" "$out/.apt/cache/archives/partial"
	apt-get -q -o APT::Sandbox::User="$(id -un)" "${foreign[@]}" update >&2
}

apt_install() {
	log "installing $*"
	[[ $(id -u) -eq 0 ]] || die "need root to apt-get install $* (or install them yourself)"
	if ! apt_get install -y --no-install-recommends "$@" >&2; then
		apt_get update >&2
		apt_get install -y --no-install-recommends "$@" >&2
	fi
}

pkg_installed() {
	[[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]
}

# --- dependencies (only installed when missing) ---------------------------
missing=()
pkg_installed busybox-static && [[ -x /bin/busybox ]] || missing+=(busybox-static)
command -v cpio >/dev/null || missing+=(cpio)
command -v gzip >/dev/null || missing+=(gzip)
command -v flock >/dev/null || missing+=(util-linux)
((${#missing[@]} == 0)) || apt_install "${missing[@]}"

exec 9>"$out/.lock"
flock 9

# --- which kernel ---------------------------------------------------------
kernel_pkg_from_apt() {
	{ apt-cache "${foreign[@]}" depends "linux-image-$arch" 2>/dev/null || true; } |
		sed -n "s/^ *Depends: \(linux-image-[0-9][^ ]*-$arch\)\$/\1/p" | head -n1
}
pkg_version() {
	{ apt-cache "${foreign[@]}" show --no-all-versions "$1" 2>/dev/null || true; } | sed -n 's/^Version: //p' | head -n1
}
update_lists() {
	if ((${#foreign[@]})); then foreign_update; else apt_get update >&2; fi
}

kpkg=${VMTEST_KERNEL_PKG:-}
if [[ -z $kpkg ]]; then
	kpkg=$(kernel_pkg_from_apt)
	if [[ -z $kpkg ]]; then
		log "linux-image-$arch unknown to apt-cache; running apt-get update"
		update_lists || true
		kpkg=$(kernel_pkg_from_apt)
	fi
fi
kpkgver=$([[ -n $kpkg ]] && pkg_version "$kpkg" || true)
if [[ -z $kpkg || -z $kpkgver ]]; then
	# No apt metadata at all: keep a previous build if there is one.
	if [[ -s $out/vmlinuz && -s $out/initrd.gz && -s $out/stamp ]]; then
		log "warning: cannot ask apt for the kernel version; keeping existing $out"
		exit 0
	fi
	die "cannot determine the kernel package (apt-cache depends linux-image-$arch)"
fi
# The host's busybox for amd64; a foreign guest's is its own package's.
if ((${#foreign[@]})); then
	bbver=$(pkg_version busybox-static)
else
	bbver=$(dpkg-query -W -f='${Version}' busybox-static)
fi

# --- cache check ----------------------------------------------------------
recipe_hash=$(cd "$here" && for f in "${recipe_files[@]}"; do
	printf '== %s\n' "$f"
	cat "$f"
done | sha256sum | cut -d' ' -f1)
stamp="recipe=$recipe_hash kernel=$kpkg=$kpkgver busybox-static=$bbver"
[[ $arch == amd64 ]] || stamp+=" arch=$arch"

if [[ ${VMTEST_FORCE:-} != 1 && -s $out/vmlinuz && -s $out/initrd.gz && -f $out/stamp &&
	$(cat "$out/stamp") == "$stamp" ]]; then
	log "up to date: $out ($kpkg $kpkgver)"
	exit 0
fi

log "building guest in $out ($kpkg $kpkgver, busybox-static $bbver)"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmtest-guest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- kernel ---------------------------------------------------------------
download_kernel() {
	local pkgs=("$kpkg=$kpkgver")
	((${#foreign[@]})) && pkgs+=("busybox-static=$bbver")
	(cd "$tmp" && apt-get -q -o APT::Sandbox::User="$(id -un)" "${foreign[@]}" download "${pkgs[@]}" >&2)
}
if ! download_kernel; then
	log "apt-get download failed; running apt-get update and retrying"
	update_lists
	if [[ -z ${VMTEST_KERNEL_PKG:-} ]]; then
		kpkg=$(kernel_pkg_from_apt)
	fi
	kpkgver=$(pkg_version "$kpkg")
	((${#foreign[@]})) && bbver=$(pkg_version busybox-static)
	stamp="recipe=$recipe_hash kernel=$kpkg=$kpkgver busybox-static=$bbver"
	[[ $arch == amd64 ]] || stamp+=" arch=$arch"
	rm -f "$tmp"/*.deb
	download_kernel
fi
mkdir "$tmp/k"
dpkg -x "$(ls "$tmp"/linux-image-*.deb)" "$tmp/k"
busybox=/bin/busybox
if ((${#foreign[@]})); then
	mkdir "$tmp/bb"
	dpkg -x "$(ls "$tmp"/busybox-static_*.deb)" "$tmp/bb"
	busybox=$tmp/bb/bin/busybox
fi
rm -f "$tmp"/*.deb

vmlinuz=$(ls "$tmp"/k/boot/vmlinuz-* | head -n1)
kver=${vmlinuz##*/vmlinuz-}
moddir=$tmp/k/lib/modules/$kver
[[ -f $moddir/modules.order ]] || die "no modules.order in $kpkg"

# --- modules: resolve dependencies from modinfo ---------------------------
declare -A modpath=() resolved=() visiting=() builtin=()
while read -r p; do
	n=${p##*/}
	n=${n%%.ko*}
	modpath[${n//-/_}]=$p
done <"$moddir/modules.order"
if [[ -f $moddir/modules.builtin ]]; then
	while read -r p; do
		n=${p##*/}
		n=${n%%.ko*}
		builtin[${n//-/_}]=1
	done <"$moddir/modules.builtin"
fi

modinfo_field() { # FILE FIELD -> value(s)
	case $1 in
	*.xz) xz -dc "$1" ;;
	*.zst) zstd -dc "$1" ;;
	*.gz) gzip -dc "$1" ;;
	*) cat "$1" ;;
	esac | tr '\0' '\n' | sed -n "s/^$2=//p"
}

order=()
resolve() { # NAME [optional]
	local n=${1//-/_} f d deps pre
	[[ -n ${resolved[$n]:-} || -n ${visiting[$n]:-} ]] && return 0
	f=${modpath[$n]:-}
	if [[ -z $f ]]; then
		if [[ -n ${builtin[$n]:-} ]]; then
			log "module $n is built in"
		elif [[ -n ${2:-} ]]; then
			: # soft dependency naming an alias or a missing module
		else
			log "module $n not found in $kver (skipped)"
		fi
		resolved[$n]=1
		return 0
	fi
	visiting[$n]=1
	deps=$(modinfo_field "$moddir/$f" depends | head -n1)
	# softdep=pre: a b post: c  -> load the "pre" ones first when they exist
	pre=$(modinfo_field "$moddir/$f" softdep | sed -n 's/^pre: *\([^:]*\)\( post:.*\)\{0,1\}$/\1/p')
	for d in ${deps//,/ }; do
		resolve "$d"
	done
	for d in $pre; do
		resolve "$d" optional
	done
	order+=("$n")
	resolved[$n]=1
}
[[ $arch == arm64 ]] && wanted_modules+=("${arm64_modules[@]}")
for m in "${wanted_modules[@]}"; do
	resolve "$m"
done

root=$tmp/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,mnt,www,etc/acpi/PWRF,etc/udhcpc,var/log,var/run,lib/modules}
: >"$root/etc/modules"
for n in "${order[@]}"; do
	f=$moddir/${modpath[$n]}
	case $f in
	*.xz) xz -dc "$f" >"$root/lib/modules/$n.ko" ;;
	*.zst) zstd -dc "$f" >"$root/lib/modules/$n.ko" ;;
	*.gz) gzip -dc "$f" >"$root/lib/modules/$n.ko" ;;
	*) cp "$f" "$root/lib/modules/$n.ko" ;;
	esac
	echo "$n ${module_args[$n]:-}" >>"$root/etc/modules"
done
echo "$kver" >"$root/etc/kernel-release"
log "modules: ${order[*]}"

# --- busybox + our scripts --------------------------------------------------
# The applet list comes from the host's busybox-static (a foreign one
# cannot run here): the same Debian source, so the same applets.
cp "$busybox" "$root/bin/busybox"
for a in $(/bin/busybox --list); do
	[[ $a == busybox ]] || ln -s busybox "$root/bin/$a"
done
install -m 0755 "$here/init" "$root/init"
install -m 0755 "$here/acpi-pwrf" "$root/etc/acpi/PWRF/00000080"
install -m 0755 "$here/udhcpc.script" "$root/etc/udhcpc/default.script"
chmod 1777 "$root/tmp"
# The kernel opens /dev/console for PID 1 before init mounts devtmpfs.
# Without root, init still redirects to /dev/console after mounting devtmpfs.
if [[ $(id -u) -eq 0 ]]; then
	mknod -m 0600 "$root/dev/console" c 5 1
	mknod -m 0666 "$root/dev/null" c 1 3
fi

# Reproducible archive: fixed mtimes, sorted names, root ownership.
find "$root" -exec touch -h -d @0 {} +
(cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
	cpio --null --quiet -o -H newc -R 0:0 --reproducible) | gzip -9n >"$tmp/initrd.gz"

# --- publish atomically -----------------------------------------------------
rm -f "$out/stamp"
cp "$vmlinuz" "$out/.vmlinuz.tmp"
mv -f "$out/.vmlinuz.tmp" "$out/vmlinuz"
mv -f "$tmp/initrd.gz" "$out/.initrd.gz.tmp"
mv -f "$out/.initrd.gz.tmp" "$out/initrd.gz"
echo "$stamp" >"$out/.stamp.tmp"
mv -f "$out/.stamp.tmp" "$out/stamp"
log "done: $out/vmlinuz ($(stat -c %s "$out/vmlinuz") bytes), $out/initrd.gz ($(stat -c %s "$out/initrd.gz") bytes), kernel $kver"
