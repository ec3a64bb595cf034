#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# fallocate through the mount: PUNCH_HOLE leaves a hole that SEEK_HOLE on
# the backing file sees (and SEEK_DATA/SEEK_HOLE through the mount), reads
# back zeros and keeps the size; ZERO_RANGE reads back zeros; mode 0
# allocates (and grows); other modes fail with EOPNOTSUPP and change
# nothing.  In both cache modes.
set -euo pipefail
VDISK_TEST_TIMEOUT=120
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires fallocate python3 cmp dd
requires_programs

MiB=$((1 << 20))

# seek FILE OFFSET SEEK_HOLE|SEEK_DATA: print the offset lseek returns.
seek ()
{
    python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(os.lseek(fd, int(sys.argv[2]), getattr(os, sys.argv[3])))' "$@"
}

for cache in none writeback; do
    echo "== cache=$cache"
    rm -f "$images/disk.img"
    make_image disk.img 16 random
    cp "$images/disk.img" "$tmpdir/orig"
    mount_vdiskfs -o cache="$cache"

    # PUNCH_HOLE|KEEP_SIZE over [1 MiB, 3 MiB)
    fallocate -p -o $MiB -l $((2 * MiB)) "$mnt/disk.img"
    [ "$(stat -c %s "$images/disk.img")" -eq $((16 * MiB)) ] ||
        fail "punch hole changed the size"
    [ "$(seek "$images/disk.img" $MiB SEEK_HOLE)" -eq $MiB ] ||
        fail "backing: no hole at 1 MiB (SEEK_HOLE says $(seek "$images/disk.img" $MiB SEEK_HOLE))"
    [ "$(seek "$images/disk.img" $MiB SEEK_DATA)" -eq $((3 * MiB)) ] ||
        fail "backing: SEEK_DATA from 1 MiB says $(seek "$images/disk.img" $MiB SEEK_DATA)"
    # lseek through the mount reports the same
    [ "$(seek "$mnt/disk.img" 0 SEEK_HOLE)" -eq $MiB ] ||
        fail "mount: SEEK_HOLE from 0 says $(seek "$mnt/disk.img" 0 SEEK_HOLE)"
    [ "$(seek "$mnt/disk.img" $MiB SEEK_DATA)" -eq $((3 * MiB)) ] ||
        fail "mount: SEEK_DATA from 1 MiB says $(seek "$mnt/disk.img" $MiB SEEK_DATA)"
    cmp -n $((2 * MiB)) -i $MiB:0 "$mnt/disk.img" /dev/zero ||
        fail "punched range does not read back as zeros"
    # around the hole nothing changed
    cmp -n $MiB "$mnt/disk.img" "$tmpdir/orig"
    cmp -i $((3 * MiB)) "$mnt/disk.img" "$tmpdir/orig"

    # ZERO_RANGE over [5 MiB, 6 MiB + 4 KiB)
    fallocate -z -o $((5 * MiB)) -l $((MiB + 4096)) "$mnt/disk.img"
    cmp -n $((MiB + 4096)) -i $((5 * MiB)):0 "$mnt/disk.img" /dev/zero ||
        fail "zeroed range does not read back as zeros"
    cmp -n $((MiB + 4096)) -i $((5 * MiB)):0 "$images/disk.img" /dev/zero ||
        fail "zeroed range is not zero in the backing file"
    cmp -n $((2 * MiB - 4096)) -i $((6 * MiB + 4096)) "$mnt/disk.img" "$tmpdir/orig"
    [ "$(stat -c %s "$mnt/disk.img")" -eq $((16 * MiB)) ] ||
        fail "zero range changed the size"

    # mode 0: allocate inside (data kept) and past the end (grows)
    fallocate -o $((8 * MiB)) -l $MiB "$mnt/disk.img"
    cmp -n $MiB -i $((8 * MiB)) "$mnt/disk.img" "$tmpdir/orig" ||
        fail "fallocate mode 0 changed data"
    fallocate -l $((20 * MiB)) "$mnt/disk.img"
    [ "$(stat -c %s "$mnt/disk.img")" -eq $((20 * MiB)) ] ||
        fail "fallocate past the end: size $(stat -c %s "$mnt/disk.img")"
    [ "$(stat -c %s "$images/disk.img")" -eq $((20 * MiB)) ] ||
        fail "fallocate past the end: backing size $(stat -c %s "$images/disk.img")"
    cmp -n $((4 * MiB)) -i $((16 * MiB)):0 "$mnt/disk.img" /dev/zero

    # Unsupported modes: EOPNOTSUPP, and the file is unchanged.
    cp "$images/disk.img" "$tmpdir/before"
    for mode in --collapse-range --insert-range; do
        if fallocate $mode -o $MiB -l $MiB "$mnt/disk.img" 2>"$tmpdir/err"; then
            fail "fallocate $mode succeeded"
        fi
        grep -q 'Operation not supported' "$tmpdir/err" ||
            fail "fallocate $mode: $(cat "$tmpdir/err")"
    done
    cmp "$images/disk.img" "$tmpdir/before"
    cmp "$mnt/disk.img" "$tmpdir/before"

    unmount_vdiskfs
done
