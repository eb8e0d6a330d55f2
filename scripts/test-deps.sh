#!/usr/bin/env bash
# Installs what the tests need from Debian's packages, only what is missing,
# so a fresh machine (and CI) is ready and a ready one pays nothing.
set -euo pipefail

# command-or-file  package
needs=(
  qemu-system-x86_64 qemu-system-x86
  qemu-img qemu-utils
  /usr/share/OVMF/OVMF_CODE_4M.fd ovmf
  qemu-system-aarch64 qemu-system-arm
  /usr/share/AAVMF/AAVMF_CODE.fd qemu-efi-aarch64
  /bin/busybox busybox-static
  cpio cpio
  xz xz-utils
  ip iproute2
  dnsmasq dnsmasq-base
  debootstrap debootstrap
  mke2fs e2fsprogs
  mkfs.vfat dosfstools
  mcopy mtools
  sfdisk fdisk
  ssh openssh-client
  sshpass sshpass
  isoinfo genisoimage
  dockerd docker.io
  script bsdutils
  nsenter util-linux
  /usr/lib/python3/dist-packages/sushy/__init__.py python3-sushy
  sushycli python3-sushy-cli
  redfishtool redfishtool
  ipmitool ipmitool
  /usr/lib/ipxe/qemu/efi-virtio.rom ipxe-qemu
  /usr/lib/ISOLINUX/isolinux.bin isolinux
  /usr/lib/syslinux/modules/bios/ldlinux.c32 syslinux-common
  isohybrid syslinux-utils
  curl curl
  /usr/share/novnc/vnc.html novnc
  vncsnapshot vncsnapshot
  vncpasswd tigervnc-tools
  tesseract tesseract-ocr
  /usr/share/tesseract-ocr/5/tessdata/eng.traineddata tesseract-ocr-eng
  chromium chromium
  chromedriver chromium-driver
  /usr/sbin/qemu-ga qemu-guest-agent
  /usr/lib/qemu/virtiofsd qemu-system-common
  swtpm swtpm
  swtpm_setup swtpm-tools
  /usr/lib/x86_64-linux-gnu/qemu/hw-display-virtio-gpu-gl.so qemu-system-gui
)

missing=()
for ((i = 0; i < ${#needs[@]}; i += 2)); do
  what=${needs[i]} pkg=${needs[i+1]}
  if [[ $what == /* ]]; then [[ -e $what ]] && continue; else command -v "$what" >/dev/null && continue; fi
  missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
