#!/bin/bash
# build.sh OUTDIR - build a Debian 12 cloud guest disk image for vmrunner
# from Debian's packages, without mounting anything.
#
# Output:
#   OUTDIR/debian-12-cloud.qcow2  UEFI-bootable disk (GPT: EFI system
#                                 partition with a standalone GRUB, then an
#                                 ext4 root labelled rootfs, last so that
#                                 cloud-init's growpart can grow it)
#   OUTDIR/vmlinuz, initrd.img    the image's kernel and initrd, for direct
#                                 kernel boot (KERNEL/INITRD, BOOT_MODE=legacy)
#   OUTDIR/stamp                  hash of the recipe (this script and the
#                                 files it copies in)
#   OUTDIR/build.log              debootstrap's and apt's output
#
# Boot it with BOOT_FROM=OUTDIR/debian-12-cloud.qcow2 (BOOT_MODE=uefi, the
# default). See docs/cloud-guest.md.
#
# The build is cached: when OUTDIR/stamp matches the current recipe, nothing
# is rebuilt. CLOUDGUEST_FORCE=1 rebuilds anyway (e.g. to pick up Debian
# updates). Concurrent calls on one OUTDIR are serialised with flock.
#
# Environment:
#   CLOUDGUEST_FORCE=1   rebuild even if the stamp matches
#   DEBOOTSTRAP_MIRROR   Debian mirror (default: the one apt uses here)
#
# Needs root (debootstrap, chroot). Packages come only from the Debian
# archive that apt is configured with.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
recipe_files=(build.sh grub.cfg 99_vmrunner.cfg)
suite=bookworm
image_name=debian-12-cloud.qcow2

# What the guest runs: a kernel for virtual machines, systemd, cloud-init
# with the bits its modules need (locales: its locale module fails without;
# python3-cffi-backend: debootstrap cannot resolve python3-cryptography's
# virtual dependency by itself), OpenSSH, D-Bus (without it logind does not
# run and the ACPI power button is ignored), sudo, ifupdown with DHCP and
# resolvconf (cloud-init renders network-config to /etc/network/interfaces.d,
# and resolvconf applies its nameservers), and growpart so the root file
# system grows to DISK_SIZE on first boot.
packages=(
	linux-image-cloud-amd64 systemd-sysv udev dbus
	cloud-init python3-cffi-backend locales cloud-guest-utils
	openssh-server sudo qemu-guest-agent
	ifupdown isc-dhcp-client resolvconf iproute2 netbase
)

disk_mib=2048 # whole disk; the root file system is grown at first boot
esp_mib=32    # EFI system partition, from 1 MiB

log() { echo "cloudguest/build.sh: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

[[ $# -eq 1 && -n $1 ]] || die "usage: $0 OUTDIR"
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap and chroot)"
mkdir -p "$1"
out=$(cd "$1" && pwd)

# --- host tools (only installed when missing) -------------------------------
need=(debootstrap:debootstrap mke2fs:e2fsprogs mkfs.vfat:dosfstools mcopy:mtools
	sfdisk:fdisk qemu-img:qemu-utils flock:util-linux)
missing=()
for n in "${need[@]}"; do
	command -v "${n%%:*}" >/dev/null || missing+=("${n#*:}")
done
if ((${#missing[@]})); then
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get -q -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${missing[@]}" >&2 || {
		apt-get -q update >&2
		apt-get -q -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${missing[@]}" >&2
	}
fi

exec 9>"$out/.lock"
flock 9

# --- cache check ------------------------------------------------------------
stamp="recipe=$(cd "$here" && for f in "${recipe_files[@]}"; do
	printf '== %s\n' "$f"
	cat "$f"
done | sha256sum | cut -d' ' -f1) suite=$suite"
if [[ ${CLOUDGUEST_FORCE:-} != 1 && -s $out/$image_name && -f $out/stamp &&
	$(cat "$out/stamp") == "$stamp" ]]; then
	log "up to date: $out/$image_name"
	exit 0
fi

start=$SECONDS
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/cloudguest.XXXXXX")
root=$tmp/root
cleanup() {
	# debootstrap mounts /proc and /sys in the target; a failed run can leave
	# them (or more) mounted, and rm must not walk into them.
	local m
	for m in $(findmnt -rn -o TARGET | grep -F "$root/" | sort -r || true); do
		umount -l "$m" || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
: >"$out/build.log"
step() { log "$* ($((SECONDS - start)) s)"; }

# --- root file system ---------------------------------------------------------
mirror=${DEBOOTSTRAP_MIRROR:-}
if [[ -z $mirror ]]; then
	fmt='$(REPO_URI)'
	mirror=$(apt-get indextargets --format "$fmt" "Codename: $suite" 'Identifier: Packages' 2>/dev/null | head -n1 || true)
fi
step "debootstrap --variant=minbase $suite ${mirror:-(default mirror)}"
include=$(
	IFS=,
	echo "${packages[*]}"
)
debootstrap --variant=minbase --include="$include" "$suite" "$root" ${mirror:+"$mirror"} >>"$out/build.log" 2>&1 ||
	die "debootstrap failed; see $out/build.log"

in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }

# No services start inside the chroot while packages are configured.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

step "configuring what debootstrap left unconfigured"
in_root dpkg --configure -a >>"$out/build.log" 2>&1 || in_root apt-get -y -f install >>"$out/build.log" 2>&1 ||
	die "packages left unconfigured; see $out/build.log"
if in_root dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | grep -v '^ii '; then
	die "packages not installed cleanly (above); see $out/build.log"
fi

# --- boot loader ----------------------------------------------------------------
# A standalone GRUB (all modules and grub.cfg inside one EFI binary) at the
# removable-media path EFI/BOOT/BOOTX64.EFI, which UEFI firmware boots without
# any boot entry in its variables. GRUB is installed in the chroot only to
# make that binary, then removed again with what it pulled in.
step "making the standalone GRUB"
in_root apt-get -y install --no-install-recommends grub-efi-amd64-bin >>"$out/build.log" 2>&1 ||
	die "apt-get install grub-efi-amd64-bin failed; see $out/build.log"
install -m 0644 "$here/grub.cfg" "$root/tmp/grub.cfg"
in_root grub-mkstandalone -O x86_64-efi -o /tmp/BOOTX64.EFI \
	--modules="part_gpt ext2 search_label linux" --locales= --themes= --fonts= \
	"boot/grub/grub.cfg=/tmp/grub.cfg" >>"$out/build.log" 2>&1 || die "grub-mkstandalone failed; see $out/build.log"
mv "$root/tmp/BOOTX64.EFI" "$tmp/BOOTX64.EFI"
rm -f "$root/tmp/grub.cfg"
in_root apt-get -y purge --autoremove grub-efi-amd64-bin grub-common grub2-common >>"$out/build.log" 2>&1 ||
	die "removing GRUB from the root file system failed; see $out/build.log"

# --- guest configuration ----------------------------------------------------------
step "configuring the guest"
install -m 0644 "$here/99_vmrunner.cfg" "$root/etc/cloud/cloud.cfg.d/99_vmrunner.cfg"
cat >"$root/etc/fstab" <<'EOF'
LABEL=rootfs	/	ext4	defaults,discard,errors=remount-ro	0	1
EOF
echo localhost >"$root/etc/hostname"
# With no system locale, cloud-init's locale module asks for en_US.UTF-8 with
# `locale-gen en_US.UTF-8`, which Debian's locale-gen ignores (it reads only
# /etc/locale.gen), so update-locale then fails and cloud-init ends in
# "status: error". C.UTF-8 is built into glibc: nothing to generate.
echo LANG=C.UTF-8 >"$root/etc/default/locale"
# Per-machine identity is made on first boot: machine-id by systemd (an empty
# file means "first boot"), SSH host keys by cloud-init. The drop-in makes
# keys anyway when cloud-init is off (CLOUD_INIT=0).
: >"$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
cat >"$root/etc/systemd/system/ssh.service.d/keygen.conf" <<'EOF'
[Service]
ExecStartPre=/usr/bin/ssh-keygen -A
EOF
# resolv.conf is resolvconf's (fed by DHCP or network-config), not the host's.
ln -sfn /run/resolvconf/resolv.conf "$root/etc/resolv.conf"

# --- size ---------------------------------------------------------------------
# Like Debian's slim images: no manuals, documentation (but copyrights) or
# translations, now or from later installs; no package caches or lists.
step "trimming"
printf 'path-exclude /usr/share/%s/*\n' doc man groff info lintian linda >"$root/etc/dpkg/dpkg.cfg.d/01-vmrunner-nodoc"
echo 'path-include /usr/share/doc/*/copyright' >>"$root/etc/dpkg/dpkg.cfg.d/01-vmrunner-nodoc"
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
for d in man groff info lintian linda; do
	rm -rf "${root:?}/usr/share/$d"/*
done
in_root apt-get clean
rm -rf "${root:?}"/var/lib/apt/lists/* "${root:?}"/var/cache/apt/*.bin "${root:?}"/debootstrap
find "$root/var/log" -type f -exec truncate -s 0 {} +
rm -f "$root/usr/sbin/policy-rc.d"
rm -rf "${root:?}"/tmp/* "${root:?}"/var/tmp/*
cp "$root/boot/vmlinuz-"* "$tmp/vmlinuz"
cp "$root/boot/initrd.img-"* "$tmp/initrd.img"

# --- disk -----------------------------------------------------------------------
step "making the disk"
mib=$((1024 * 1024))
root_mib=$((disk_mib - 1 - esp_mib - 1)) # GPT: 1 MiB in front, the backup table at the end
mkfs.vfat -n ESP -C "$tmp/esp.img" $((esp_mib * 1024)) >>"$out/build.log"
mmd -i "$tmp/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$tmp/esp.img" "$tmp/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
mke2fs -q -t ext4 -L rootfs -d "$root" "$tmp/root.img" "${root_mib}M" >>"$out/build.log" 2>&1 ||
	die "mke2fs failed; see $out/build.log"
rm -rf "$root"
truncate -s $((disk_mib * mib)) "$tmp/disk.raw"
sfdisk -q "$tmp/disk.raw" >>"$out/build.log" <<EOF
label: gpt
start=1MiB, size=${esp_mib}MiB, type=uefi, name=ESP
start=$((1 + esp_mib))MiB, size=${root_mib}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, name=root
EOF
dd if="$tmp/esp.img" of="$tmp/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$tmp/root.img" of="$tmp/disk.raw" bs=1M seek=$((1 + esp_mib)) conv=notrunc,sparse status=none
rm -f "$tmp/esp.img" "$tmp/root.img"
# Compressed: read-only use as vmrunner's backing file is all it gets.
qemu-img convert -c -O qcow2 "$tmp/disk.raw" "$tmp/$image_name"

# --- publish atomically ---------------------------------------------------------
rm -f "$out/stamp"
for f in "$image_name" vmlinuz initrd.img; do
	mv -f "$tmp/$f" "$out/.$f.tmp"
	mv -f "$out/.$f.tmp" "$out/$f"
done
echo "$stamp" >"$out/.stamp.tmp"
mv -f "$out/.stamp.tmp" "$out/stamp"
step "done: $out/$image_name ($(du -h --apparent-size "$out/$image_name" | cut -f1))"
