#!/bin/sh
# Remakes the 7-Zip and bzip2 fixtures of archive_test.go with p7zip (7z)
# and bzip2: Go has no writer for either. disk.raw is "vmrunner 7z
# fixture\n" repeated to 64 KiB, then 256 KiB of zeros (fixtureDisk in
# archive_test.go).
set -eu
out=$(cd "$(dirname "$0")" && pwd)
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
cd "$w"
yes 'vmrunner 7z fixture' | head -c 65536 >disk.raw
head -c 262144 /dev/zero >>disk.raw
head -c 4096 disk.raw >b.img
echo hello >README.txt
ln -s /etc/passwd link.img
rm -f "$out"/*.7z "$out"/*.bz2
bzip2 -c disk.raw >disk.raw.bz2
7z a -bd disk.7z disk.raw README.txt >/dev/null
7z a -bd two.7z disk.raw b.img >/dev/null
7z a -bd -snl symlink.7z disk.raw link.img >/dev/null
# Header not compressed: the test renames disk.raw to ../x.raw in place.
7z a -bd -mhc=off disk-plain-header.7z disk.raw >/dev/null
cp ./*.7z ./*.bz2 "$out"/
