#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Mirror jobs through the mount, the data checked end to end with fio's
# verify (crc32c headers in every 4 KiB block, the writer's state saved,
# then read back with --verify_only --verify_state_load) and with cmp:
#  1. A 256 MiB image mirrored (background mode) while fio writes to it
#     reaches ready; the writer stops, the job completes with a pivot, and
#     then: the old source equals the target (both as of the switch), fio's
#     verify passes through the mount, the mount reads exactly the target,
#     and `vdiskctl info` shows the target as the backing file.
#  2. The pivot survives a restart: after a remount the file reads the
#     target, info shows it, fio's verify still passes, and a write through
#     the mount lands in the target while the old source stays untouched.
#  3. write-blocking against a heavy writer (fio at depth 16, no rate
#     limit) reaches ready while the writer runs, and completes (pivots)
#     while it still runs: fio sees no error, its verify passes through the
#     mount afterwards, and the mount reads exactly the new target.
#  4. background against the same heavy writer need not converge: it only
#     has to make progress, and once the writer stops, reach ready and
#     complete with the target exactly the old source.
#  5. --no-pivot: the file stays on its source, the target equals the
#     source as of the completion, and later writes through the mount go
#     to the source only.  Then --sync none onto that copy (--existing)
#     copies what is written during the job and nothing else.
#  6. After another restart the last of several pivots is the one served,
#     every old source stayed as it was when the image left it, and the
#     --no-pivot image is still served from its source.  The daemon that
#     made two pivots exits 0.
set -euo pipefail
VDISK_TEST_TIMEOUT=180
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires fio python3 cmp cksum dd
requires_programs

mirror=$tmpdir/mirror
mkdir -p "$mirror"
make_image disk.img 256 random
make_image small.img 64 random
cp "$images/disk.img" "$tmpdir/disk.orig"
mount_vdiskfs -o mirror_dir="$mirror"
f=$mnt/disk.img

backing () { info_json "$1" '["backing"]'; }
sum () { cksum < "$1"; }

# ---- fio: a verified writer, and a heavy writer for load -----------------
# The verified writer writes each block of the first 128 MiB at most once
# (fio's random map), so that its verify pass knows what every block must
# hold; the noise writer hammers the other 128 MiB until it is stopped.
# Both stop when $tmpdir/stop appears (fio's trigger file), and the
# verified one then saves its state (which writes completed).
verified=(--name=verified --filename="$f" --ioengine=libaio --direct=1
          --rw=randwrite --bs=4k --offset=0 --size=128M --iodepth=8
          --verify=crc32c --verify_fatal=1)
noise=(--name=noise --filename="$f" --ioengine=libaio --direct=1
       --rw=randwrite --bs=4k --offset=128M --size=128M --iodepth=16
       --time_based --runtime=600)
fio_pid=

# start_writers [noise]: start fio with the verified writer (limited to
# 2000 writes/s, so that it cannot finish its 32768 blocks before it is
# stopped) and, with "noise", the heavy writer too.  Returns once fio has
# written through the mount.
start_writers ()
{
    local jobs=("${verified[@]}" --do_verify=0 --verify_state_save=1
                --rate_iops=2000)
    [ "${1:-}" != noise ] || jobs+=("${noise[@]}")
    rm -f "$tmpdir/stop" "$tmpdir/local-verified-0-verify.state"
    "$VDISKCTL" stats-reset "$f"
    fio --aux-path="$tmpdir" --trigger-file="$tmpdir/stop" \
        --output="$tmpdir/fio-write.out" "${jobs[@]}" </dev/null &
    fio_pid=$!
    cleanup_kill "$fio_pid"
    writing () { [ "$(info_json "$f" '["stats"]["writes"]')" -ge 500 ]; }
    wait_until "$VDISK_WAIT_LIMIT" writing ||
        fail "fio has not written through the mount"
}

writers_alive () { kill -0 "$fio_pid" 2>/dev/null; }

# stop_writers: stop fio through its trigger file; it must exit 0 (no
# I/O error through the mount) and have saved the verified writer's state.
stop_writers ()
{
    : > "$tmpdir/stop"
    wait_until 60 eval '! writers_alive' || fail "fio did not stop"
    wait "$fio_pid" || { cat "$tmpdir/fio-write.out"; fail "fio's writers failed"; }
    [ -s "$tmpdir/local-verified-0-verify.state" ] ||
        fail "fio saved no verify state"
}

# verify_through_mount: read back every block the verified writer had
# completed, through the mount.
verify_through_mount ()
{
    "$VDISKCTL" stats-reset "$f"
    fio --aux-path="$tmpdir" --output="$tmpdir/fio-verify.out" \
        "${verified[@]}" --verify_only=1 --verify_state_load=1 \
        --verify_state_save=0 </dev/null || {
        cat "$tmpdir/fio-verify.out"
        fail "fio's verify through the mount failed ($1)"
    }
    local n
    n=$(info_json "$f" '["stats"]["reads"]')
    [ "$n" -gt 0 ] || fail "the verify read nothing through the mount"
}

# ---- 1. background mirror under a verified writer, then a pivot ----------
start_writers
"$VDISKCTL" mirror start "$f" "$mirror/t1.img" > "$tmpdir/start.out"
grep -q "^mirror job [0-9]* started: $f -> $mirror/t1.img\$" "$tmpdir/start.out" ||
    fail "mirror start printed '$(cat "$tmpdir/start.out")'"
[ "$(stat -c '%a %u' "$mirror/t1.img")" = "600 $(id -u)" ] ||
    fail "new target: mode/owner $(stat -c '%a %u' "$mirror/t1.img")"
"$VDISKCTL" mirror wait "$f" --ready --timeout 60 ||
    fail "background mirror did not get ready under a 2000 IOPS writer"
writers_alive || fail "the writer ended before the job was ready"
[ "$(mirror_json "$f" '["ever_ready"]')" = true ] || fail "ready but not ever_ready"
stop_writers
"$VDISKCTL" mirror complete "$f" > "$tmpdir/complete.out"
grep -q "now uses $mirror/t1.img" "$tmpdir/complete.out" ||
    fail "mirror complete printed '$(cat "$tmpdir/complete.out")'"
[ "$(mirror_json "$f" '["state"]')" = concluded ] || fail "state after complete"
[ "$(mirror_json "$f" '["pivoted"]')" = true ] || fail "status: not pivoted"
[ "$(mirror_json "$f" '["consistent"]')" = true ] || fail "status: not consistent"
[ "$(info_json "$f" '["pivoted"]')" = true ] || fail "info: not pivoted"
[ "$(info_json "$f" '["mirror_state"]')" = concluded ] || fail "info: mirror_state"
[ "$(backing "$f")" = "$mirror/t1.img" ] || fail "info backing '$(backing "$f")'"
# No writes after the stop: source and target as of the switch are equal.
cmp "$images/disk.img" "$mirror/t1.img" ||
    fail "the old source and the target differ after the pivot"
cmp -s "$images/disk.img" "$tmpdir/disk.orig" &&
    fail "the writer changed nothing (the checks above prove nothing)"
verify_through_mount "after the pivot"
cmp_mounted "$f" "$mirror/t1.img" || fail "the mount does not read the target"
src_sum=$(sum "$images/disk.img")

# ---- 2. the pivot survives a restart ---------------------------------------
unmount_vdiskfs
mount_vdiskfs -o mirror_dir="$mirror"
[ "$(backing "$f")" = "$mirror/t1.img" ] ||
    fail "after a restart the backing is '$(backing "$f")'"
[ "$(info_json "$f" '["pivoted"]')" = true ] ||
    fail_later "info: pivoted is false after a restart, yet the backing is the target"
[ "$(ls "$mnt" | tr '\n' ' ')" = "disk.img small.img " ] ||
    fail "listing after restart: $(ls -A "$mnt" | tr '\n' ' ')"
cmp_mounted "$f" "$mirror/t1.img" || fail "after a restart the mount does not read the target"
verify_through_mount "after the restart"
head -c 1M /dev/urandom > "$tmpdir/pattern"
dd if="$tmpdir/pattern" of="$f" bs=1M seek=200 oflag=direct conv=notrunc status=none
dd if="$mirror/t1.img" bs=1M skip=200 count=1 status=none | cmp - "$tmpdir/pattern" ||
    fail "a write after the restart did not reach the target"
[ "$(sum "$images/disk.img")" = "$src_sum" ] ||
    fail "a write after the restart changed the old source"

# ---- 3. write-blocking reaches ready under a heavy writer, pivots under it -
start_writers noise
"$VDISKCTL" mirror start "$f" "$mirror/t2.img" --mode write-blocking >/dev/null
"$VDISKCTL" mirror wait "$f" --ready --timeout 60 ||
    fail "write-blocking did not get ready under a heavy writer"
writers_alive || fail "the writers ended before the job was ready"
[ "$(mirror_json "$f" '["mode"]')" = write-blocking ] || fail "status: mode"
"$VDISKCTL" mirror complete "$f" --timeout 60 >/dev/null
writers_alive || fail "fio died across the pivot"
[ "$(backing "$f")" = "$mirror/t2.img" ] || fail "info backing '$(backing "$f")'"
stop_writers
t1_sum=$(sum "$mirror/t1.img")
verify_through_mount "after a pivot under load"
cmp_mounted "$f" "$mirror/t2.img" || fail "the mount does not read the new target"

# ---- 4. background under a heavy writer: exact once the writer stops ------
start_writers noise
"$VDISKCTL" mirror start "$f" "$mirror/t3.img" >/dev/null
progress () { [ "$(mirror_json "$f" '["bytes_done"]')" -gt 0 ]; }
wait_until 30 progress || fail "background mirror made no progress under load"
writers_alive || fail "the writers ended early"
stop_writers
"$VDISKCTL" mirror wait "$f" --ready --timeout 60 ||
    fail "background mirror did not get ready once the writer stopped"
"$VDISKCTL" mirror complete "$f" >/dev/null
cmp "$mirror/t2.img" "$mirror/t3.img" ||
    fail "background mirror: the target differs from the source at the switch"
t2_sum=$(sum "$mirror/t2.img")
verify_through_mount "after a background mirror under load"
cmp_mounted "$f" "$mirror/t3.img" || fail "the mount does not read the third target"

# ---- 5. --no-pivot -----------------------------------------------------
s=$mnt/small.img
"$VDISKCTL" mirror start "$s" "$mirror/small-copy.img" >/dev/null
dd if="$tmpdir/pattern" of="$s" bs=1M seek=5 oflag=direct conv=notrunc status=none
"$VDISKCTL" mirror wait "$s" --ready --timeout 60
dd if="$tmpdir/pattern" of="$s" bs=1M seek=40 oflag=direct conv=notrunc status=none
"$VDISKCTL" mirror complete "$s" --no-pivot > "$tmpdir/complete.out"
grep -q "$mirror/small-copy.img is a copy of it" "$tmpdir/complete.out" ||
    fail "complete --no-pivot printed '$(cat "$tmpdir/complete.out")'"
[ "$(mirror_json "$s" '["state"]')" = concluded ] || fail "no-pivot: state"
[ "$(mirror_json "$s" '["no_pivot"]')" = true ] || fail "no-pivot: flag"
[ "$(mirror_json "$s" '["pivoted"]')" = false ] || fail "no-pivot: pivoted"
[ "$(mirror_json "$s" '["consistent"]')" = true ] || fail "no-pivot: consistent"
[ "$(info_json "$s" '["pivoted"]')" = false ] || fail "no-pivot: info pivoted"
[ "$(backing "$s")" = "$images/small.img" ] || fail "no-pivot: backing '$(backing "$s")'"
cmp "$images/small.img" "$mirror/small-copy.img" ||
    fail "no-pivot: the target differs from the source"
copy_sum=$(sum "$mirror/small-copy.img")
dd if=/dev/zero of="$s" bs=1M seek=10 count=2 oflag=direct conv=notrunc status=none
cmp -n 2M -i 10M:0 "$images/small.img" /dev/zero ||
    fail "no-pivot: a later write did not reach the source"
[ "$(sum "$mirror/small-copy.img")" = "$copy_sum" ] ||
    fail "no-pivot: a later write reached the target"
cmp_mounted "$s" "$images/small.img"
# --sync none onto that copy: only what is written from now on is copied.
# A marker written into the target alone must survive; a write through
# the mount must arrive.
head -c 64k /dev/urandom > "$tmpdir/marker"
dd if="$tmpdir/marker" of="$mirror/small-copy.img" bs=64k seek=100 conv=notrunc status=none
"$VDISKCTL" mirror start "$s" "$mirror/small-copy.img" --existing --sync none >/dev/null
[ "$(mirror_json "$s" '["sync"]')" = none ] || fail "sync none: status says $(mirror_json "$s" '["sync"]')"
dd if="$tmpdir/pattern" of="$s" bs=1M seek=20 oflag=direct conv=notrunc status=none
"$VDISKCTL" mirror wait "$s" --ready --timeout 60
"$VDISKCTL" mirror complete "$s" --no-pivot >/dev/null
dd if="$mirror/small-copy.img" bs=1M skip=20 count=1 status=none | cmp - "$tmpdir/pattern" ||
    fail "sync none: a write during the job did not reach the target"
dd if="$mirror/small-copy.img" bs=64k skip=100 count=1 status=none | cmp - "$tmpdir/marker" ||
    fail "sync none: the job copied what was not written during it"

# ---- 6. a restart: the last pivot wins; old sources untouched ----------
# (Two pivots in one run of the daemon: it must also exit cleanly.)
unmount_vdiskfs || fail_later "the daemon did not exit cleanly after two pivots"
mount_vdiskfs -o mirror_dir="$mirror"
[ "$(backing "$f")" = "$mirror/t3.img" ] ||
    fail "after three pivots and a restart the backing is '$(backing "$f")'"
cmp_mounted "$f" "$mirror/t3.img"
[ "$(sum "$images/disk.img")" = "$src_sum" ] || fail "the first source changed"
[ "$(sum "$mirror/t1.img")" = "$t1_sum" ] || fail "t1 changed after the image left it"
[ "$(sum "$mirror/t2.img")" = "$t2_sum" ] || fail "t2 changed after the image left it"
# --no-pivot recorded nothing: small.img is still served from its source.
[ "$(backing "$s")" = "$images/small.img" ] || fail "no-pivot: backing after restart"
cmp_mounted "$s" "$images/small.img"
unmount_vdiskfs
