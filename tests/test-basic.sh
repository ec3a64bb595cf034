#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The mounted files behave as regular files: list, stat, read, dd write
# (direct and unaligned) read back and compared with the backing file,
# qemu-img info/compare/convert, create, unlink, truncate, grow by writing
# past the end, cp into the mount, images added and removed behind the
# daemon's back, a read-only mount, and the basic vdiskctl commands.
set -euo pipefail
VDISK_TEST_TIMEOUT=120
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires qemu-img python3 cmp dd stat truncate
requires_programs

umask 022
make_image disk0.img 64 random
make_image disk1.img 16 zero
mount_vdiskfs

# ---- listing and attributes --------------------------------------------
listing=$(ls "$mnt" | tr '\n' ' ')
[ "$listing" = "disk0.img disk1.img " ] || fail "ls: '$listing'"
for f in disk0.img disk1.img; do
    # size, mode, owner and mtime come from the backing file
    a=$(stat -c '%s %f %u %g %Y' "$mnt/$f")
    b=$(stat -c '%s %f %u %g %Y' "$images/$f")
    [ "$a" = "$b" ] || fail "stat $f: mount '$a', backing '$b'"
done
cmp "$mnt/disk0.img" "$images/disk0.img"
cmp "$mnt/disk1.img" "$images/disk1.img"

# ---- dd with O_DIRECT, then unaligned writes ----------------------------
head -c 4M /dev/urandom > "$tmpdir/pattern"
dd if="$tmpdir/pattern" of="$mnt/disk0.img" bs=1M seek=8 \
   oflag=direct conv=notrunc status=none
dd if="$mnt/disk0.img" bs=1M skip=8 count=4 iflag=direct status=none |
    cmp - "$tmpdir/pattern"
dd if="$images/disk0.img" bs=1M skip=8 count=4 status=none |
    cmp - "$tmpdir/pattern"
# A write that is not sector-aligned in offset or length (the backing is
# O_DIRECT under cache=none, so the daemon has to read-modify-write).
printf 'vdiskfs unaligned' |
    dd of="$mnt/disk0.img" bs=1 seek=12345 conv=notrunc status=none
got=$(dd if="$images/disk0.img" bs=1 skip=12345 count=17 status=none)
[ "$got" = "vdiskfs unaligned" ] || fail "unaligned write: backing has '$got'"
cmp "$mnt/disk0.img" "$images/disk0.img"
[ "$(stat -c %s "$mnt/disk0.img")" -eq $((64 << 20)) ] ||
    fail "a write inside the file changed its size"

# ---- qemu-img -----------------------------------------------------------
size=$(qemu-img info -f raw --output=json "$mnt/disk0.img" |
       python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
[ "$size" -eq $((64 << 20)) ] || fail "qemu-img info: virtual-size $size"
qemu-img compare -f raw -F raw "$mnt/disk0.img" "$images/disk0.img"
# and compare does see a difference (so the line above proves something)
if qemu-img compare -q -f raw -F raw "$mnt/disk0.img" "$mnt/disk1.img"; then
    fail "qemu-img compare found two different images identical"
fi
qemu-img convert -f raw -O raw "$images/disk0.img" "$mnt/conv.img"
cmp "$images/disk0.img" "$images/conv.img"
qemu-img compare -f raw -F raw "$mnt/conv.img" "$images/disk0.img"

# ---- create, write, truncate, grow, unlink ------------------------------
: > "$mnt/new.img"
[ -f "$images/new.img" ] || fail "create did not create the backing file"
[ "$(stat -c '%u %g %a %s' "$images/new.img")" = "$(id -u) $(id -g) 644 0" ] ||
    fail "created backing file: $(stat -c '%u %g %a %s' "$images/new.img")"
[ "$(stat -c '%u %a %s' "$mnt/new.img")" = "$(id -u) 644 0" ] ||
    fail "created file in the mount: $(stat -c '%u %a %s' "$mnt/new.img")"
truncate -s 32M "$mnt/new.img"
[ "$(stat -c %s "$images/new.img")" -eq $((32 << 20)) ] || fail "truncate up"
[ "$(stat -c %s "$mnt/new.img")" -eq $((32 << 20)) ] || fail "truncate up (mount)"
dd if="$tmpdir/pattern" of="$mnt/new.img" bs=1M count=2 conv=notrunc \
   oflag=direct status=none
truncate -s 1M "$mnt/new.img"
[ "$(stat -c %s "$images/new.img")" -eq $((1 << 20)) ] || fail "truncate down"
[ "$(stat -c %s "$mnt/new.img")" -eq $((1 << 20)) ] || fail "truncate down (mount)"
head -c 1M "$tmpdir/pattern" | cmp - "$mnt/new.img"
# Grow by writing 64 KiB at 6400 KiB, past the end: the gap reads as zeros.
dd if="$tmpdir/pattern" of="$mnt/new.img" bs=64k seek=100 count=1 \
   conv=notrunc oflag=direct status=none
[ "$(stat -c %s "$mnt/new.img")" -eq $((101 * 65536)) ] ||
    fail "write past the end: size $(stat -c %s "$mnt/new.img")"
[ "$(stat -c %s "$images/new.img")" -eq $((101 * 65536)) ] ||
    fail "write past the end: backing size $(stat -c %s "$images/new.img")"
cmp -n $((100 * 65536 - (1 << 20))) -i $((1 << 20)):0 "$mnt/new.img" /dev/zero
dd if="$mnt/new.img" bs=64k skip=100 status=none |
    cmp - <(head -c 64k "$tmpdir/pattern")
cmp "$mnt/new.img" "$images/new.img"
# O_TRUNC on open
: > "$mnt/new.img"
[ "$(stat -c %s "$images/new.img")" -eq 0 ] || fail "O_TRUNC ignored"
rm "$mnt/new.img"
[ ! -e "$images/new.img" ] || fail "unlink left the backing file"
[ ! -e "$mnt/new.img" ] || fail "unlinked file still in the mount"

# ---- cp into the mount (length not a multiple of any block size) --------
head -c $((3 * 1048576 + 123)) /dev/urandom > "$tmpdir/src.bin"
cp "$tmpdir/src.bin" "$mnt/copy.img"
cmp "$tmpdir/src.bin" "$images/copy.img"
cmp "$tmpdir/src.bin" "$mnt/copy.img"

# ---- images added and removed behind the daemon's back ------------------
make_image late.img 1 random
cmp "$images/late.img" "$mnt/late.img"
rm "$images/late.img"
# The kernel may cache the old entry for its timeout: poll, with a limit.
late_gone () { ! stat "$mnt/late.img" >/dev/null 2>&1; }
wait_until 10 late_gone || fail "a removed image is still in the mount"
case " $(ls "$mnt" | tr '\n' ' ') " in
*" late.img "*) fail "a removed image is still listed" ;;
esac

# ---- vdiskctl: info, flush, stats-reset ---------------------------------
[ "$(info_json "$mnt/disk0.img" '["size"]')" -eq $((64 << 20)) ] ||
    fail "info size"
[ "$(info_json "$mnt/disk0.img" '["name"]')" = disk0.img ] || fail "info name"
[ "$(info_json "$mnt/disk0.img" '["cache"]')" = none ] || fail "info cache"
[ "$(info_json "$mnt/disk0.img" '["read_only"]')" = false ] ||
    fail "info read_only"
backing=$(info_json "$mnt/disk0.img" '["backing"]')
[ "$backing" -ef "$images/disk0.img" ] || fail "info backing '$backing'"
"$VDISKCTL" info "$mnt/disk0.img" >/dev/null
# Counting, with the image kept open by us meanwhile.
exec {keep}<"$mnt/disk0.img"
"$VDISKCTL" stats-reset "$mnt/disk0.img"
[ "$(info_json "$mnt/disk0.img" '["stats"]["writes"]')" -eq 0 ] ||
    fail "stats-reset left writes"
dd if="$tmpdir/pattern" of="$mnt/disk0.img" bs=64k count=3 \
   oflag=direct conv=notrunc status=none
[ "$(info_json "$mnt/disk0.img" '["stats"]["writes"]')" -ge 3 ] ||
    fail "3 writes not counted"
[ "$(info_json "$mnt/disk0.img" '["stats"]["write_bytes"]')" -ge $((3 * 65536)) ] ||
    fail "written bytes not counted"
f0=$(info_json "$mnt/disk0.img" '["stats"]["flushes"]')
"$VDISKCTL" flush "$mnt/disk0.img"
f1=$(info_json "$mnt/disk0.img" '["stats"]["flushes"]')
[ "$f1" -gt "$f0" ] || fail "vdiskctl flush: flushes $f0 -> $f1"
[ "$(info_json "$mnt/disk0.img" '["drain_depth"]')" -eq 0 ] || fail "drain_depth"
[ "$(info_json "$mnt/disk0.img" '["open_handles"]')" -ge 1 ] || fail "open_handles"
exec {keep}<&-
# The image's statistics are the daemon's, not one opening's: they survive
# the last close (a user runs dd, then vdiskctl info).
w=$(info_json "$mnt/disk0.img" '["stats"]["writes"]')
[ "$w" -ge 3 ] || fail "statistics lost when the last handle closed (writes $w)"

unmount_vdiskfs

# ---- the same files after a remount: nothing was lost ------------------
cmp "$images/copy.img" "$tmpdir/src.bin"

# ---- read-only mount ----------------------------------------------------
mount_vdiskfs -o ro -o cache=writeback -o aio=threads
cmp "$mnt/disk0.img" "$images/disk0.img"
[ "$(info_json "$mnt/disk0.img" '["read_only"]')" = true ] || fail "info read_only (ro)"
[ "$(info_json "$mnt/disk0.img" '["cache"]')" = writeback ] || fail "info cache (ro)"
[ "$(info_json "$mnt/disk0.img" '["driver"]')" = threads ] || fail "info driver (ro)"
cp "$images/disk0.img" "$tmpdir/disk0.before"
if dd if=/dev/zero of="$mnt/disk0.img" bs=4k count=1 conv=notrunc \
      status=none 2>"$tmpdir/ro.err"; then
    fail "a write to a read-only mount succeeded"
fi
grep -q 'Read-only file system' "$tmpdir/ro.err" ||
    fail "ro write: $(cat "$tmpdir/ro.err")"
if : > "$mnt/ro-new.img" 2>/dev/null; then fail "create on a read-only mount"; fi
cmp "$images/disk0.img" "$tmpdir/disk0.before"
unmount_vdiskfs
