#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A mirror job that ends badly:
#  1. kill -9 of the daemon while a write-blocking job copies and four
#     writers write numbered records with O_DIRECT, each logging the
#     records whose write returned.  After the kill every acknowledged
#     record is in the backing file and, after a remount, reads back
#     through the mount (writes in flight at the kill are not checked: they
#     may or may not have landed); no pivot was recorded (the source is
#     served, the pivots file names nothing), and the half-copied target
#     can be taken again with --existing and completed.
#  2. A target on a 16 MiB tmpfs, an image of 64 MiB of random data: the
#     job fails with ENOSPC on the target side (status: state failed,
#     error 28, error_side target; `mirror wait` exits 1 saying so), and
#     the source keeps serving reads and writes, its size free again.
#     Under --on-target-error stop the same error pauses the job instead,
#     and the source serves meanwhile.
set -euo pipefail
VDISK_TEST_TIMEOUT=120
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires_root
requires python3 cmp dd truncate
requires_programs

mirror=$tmpdir/mirror
mkdir -p "$mirror"
make_image disk.img 128 random
f=$mnt/disk.img
mount_vdiskfs -o mirror_dir="$mirror"

# ---- 1. kill -9 during a mirror ---------------------------------------------
# Four writers, each writing numbered 4 KiB records with O_DIRECT at
# scattered offsets (block b gets "block b writer w"; every block at most
# once) and logging each number once its write returned.  (fio's
# --verify_state_save cannot do this here: after a kill its saved state
# counts writes that failed in flight as written, and its verify fails
# even without a mirror.)
cat > "$tmpdir/writer.py" <<'EOF_PY'
import mmap, os, sys
path, log, wid, nwriters, nblocks = sys.argv[1:6]
wid, nwriters, nblocks = int(wid), int(nwriters), int(nblocks)
fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)              # page-aligned, as O_DIRECT wants
acks = open(log, "w", buffering=1)
for i in range(wid, nblocks, nwriters):
    b = (i * 7919) % nblocks           # a permutation: nblocks is 2^k
    buf.seek(0)
    buf.write(("block %08d writer %d\n" % (b, wid)).encode().ljust(4096, b"#"))
    os.pwrite(fd, buf, b * 4096)
    acks.write("%d\n" % b)             # acknowledged
EOF_PY
# check.py IMAGE|- NWRITERS ACKLOG: every acknowledged record is in IMAGE.
cat > "$tmpdir/check.py" <<'EOF_PY'
import sys
image, nwriters, acklog = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = sys.stdin.buffer.read() if image == "-" else open(image, "rb").read()
bad = total = 0
for w in range(nwriters):
    for line in open("%s.%d" % (acklog, w)):
        if not line.endswith("\n"):
            continue
        b = int(line)
        total += 1
        want = ("block %08d writer %d\n" % (b, w)).encode().ljust(4096, b"#")
        if data[b * 4096:(b + 1) * 4096] != want:
            bad += 1
            if bad <= 5:
                print("block %d (writer %d): acknowledged, not there" % (b, w))
print("%d acknowledged writes checked, %d missing" % (total, bad))
sys.exit(1 if bad or total == 0 else 0)
EOF_PY
nblocks=$((128 << 8))                  # 4 KiB blocks in 128 MiB
"$VDISKCTL" mirror start "$f" "$mirror/target.img" --mode write-blocking \
    --speed 16M >/dev/null
writer_pids=()
for w in 0 1 2 3; do
    python3 "$tmpdir/writer.py" "$f" "$tmpdir/acks.$w" "$w" 4 "$nblocks" \
        2>/dev/null &
    writer_pids+=($!)
done
cleanup_kill "${writer_pids[@]}"
acked () { cat "$tmpdir"/acks.* 2>/dev/null | wc -l; }
enough () { [ "$(acked)" -ge 2000 ]; }
wait_until "$VDISK_WAIT_LIMIT" enough || fail "the writers did not write ($(acked) acks)"
[ "$(mirror_json "$f" '["state"]')" = running ] ||
    fail "the job is '$(mirror_json "$f" '["state"]')', not running, at the kill"
for p in "${writer_pids[@]}"; do
    kill -0 "$p" || fail "a writer ended before the kill"
done
kill -KILL "$vdiskfs_pid"
daemon_killed
echo "killed the daemon after $(acked) acknowledged writes"
# Each writer's next write fails: none may hang, none may go on.
writers_gone ()
{
    local p
    for p in "${writer_pids[@]}"; do
        ! kill -0 "$p" 2>/dev/null || return 1
    done
}
wait_until "$VDISK_WAIT_LIMIT" writers_gone || fail "a writer hangs after the daemon died"
for p in "${writer_pids[@]}"; do
    if wait "$p"; then fail "a writer went on without the daemon"; fi
done
unmount_vdiskfs
python3 "$tmpdir/check.py" "$images/disk.img" 4 "$tmpdir/acks" ||
    fail "writes acknowledged before the kill are missing from the backing file"

mount_vdiskfs -o mirror_dir="$mirror"
[ "$(info_json "$f" '["backing"]')" = "$images/disk.img" ] ||
    fail "after the crash the backing is '$(info_json "$f" '["backing"]')'"
[ "$(info_json "$f" '["pivoted"]')" = false ] || fail "pivoted after the crash"
[ "$(mirror_json "$f" '["state"]')" = none ] || fail "a job after the restart"
if [ -e "$images/.vdiskfs/pivots" ] &&
   grep -q "^disk.img"$'\t' "$images/.vdiskfs/pivots"; then
    fail "a pivot was recorded: $(cat "$images/.vdiskfs/pivots")"
fi
dd if="$f" bs=4M iflag=direct status=none |
    python3 "$tmpdir/check.py" - 4 "$tmpdir/acks" ||
    fail "writes acknowledged before the kill do not read back through the mount"
# The half-copied target: taken again, and completed this time.
ctl_expect 1 'File exists' mirror start "$f" "$mirror/target.img"
"$VDISKCTL" mirror start "$f" "$mirror/target.img" --existing >/dev/null
"$VDISKCTL" mirror wait "$f" --ready --timeout 60
"$VDISKCTL" mirror complete "$f" --no-pivot >/dev/null
cmp "$images/disk.img" "$mirror/target.img" || fail "the retaken target differs"
unmount_vdiskfs

# ---- 2. the target's file system fills up -------------------------------
small=$tmpdir/small
mkdir "$small"
mount -t tmpfs -o size=16M,mode=0755 vdisk-test-small "$small"
cleanup_fn umount -l "$small"
make_image full.img 64 random
cp "$images/full.img" "$tmpdir/full.orig"
head -c 1M /dev/urandom > "$tmpdir/pattern"
mount_vdiskfs -o mirror_dir="$small"
g=$mnt/full.img

"$VDISKCTL" mirror start "$g" "$small/target.img" >/dev/null
ctl_expect 1 'mirror job [0-9]+ failed: No space left on device \(on the target\)' \
    mirror wait "$g" --timeout 60
st () { mirror_json "$g" "$@"; }
[ "$(st '["state"]')" = failed ] || fail "state '$(st '["state"]')' on a full target"
[ "$(st '["error"]')" -eq 28 ] || fail "error $(st '["error"]'), want ENOSPC (28)"
[ "$(st '["error_side"]')" = target ] || fail "error_side $(st '["error_side"]')"
[ "$(st '["error_text"]')" = "No space left on device" ] || fail "error_text $(st '["error_text"]')"
[ "$(st '["consistent"]')" = false ] || fail "a failed job claims a consistent target"
"$VDISKCTL" mirror status "$g" | grep -q '^error: No space left on device (target, errno 28)' ||
    fail "status: $("$VDISKCTL" mirror status "$g" | grep '^error')"
[ "$(info_json "$g" '["backing"]')" = "$images/full.img" ] || fail "failed job: backing"
[ "$(info_json "$g" '["mirror_state"]')" = failed ] || fail "info mirror_state"
# The source serves on: reads, writes, and its size is free again.
cmp_mounted "$g" "$tmpdir/full.orig" || fail "the source reads wrong after the failure"
dd if="$tmpdir/pattern" of="$g" bs=1M seek=30 oflag=direct conv=notrunc status=none
dd if="$g" bs=1M skip=30 count=1 iflag=direct status=none | cmp - "$tmpdir/pattern" ||
    fail "a write after the failure does not read back"
dd if="$images/full.img" bs=1M skip=30 count=1 status=none | cmp - "$tmpdir/pattern" ||
    fail "a write after the failure did not reach the source"
truncate -s 65M "$g" || fail "truncate after the failed job"
truncate -s 64M "$g"
[ "$(stat -c %s "$images/full.img")" -eq $((64 << 20)) ] || fail "size after truncate"

# --on-target-error stop: the job pauses on the error; the source serves.
rm -f "$small/target.img"
cp "$images/full.img" "$tmpdir/full.orig"
"$VDISKCTL" mirror start "$g" "$small/target2.img" --on-target-error stop >/dev/null
paused_on_error () { mirror_state_is "$g" paused && [ "$(st '["error"]')" -eq 28 ]; }
wait_until 30 paused_on_error || fail "on-target-error stop: state '$(st '["state"]')' error $(st '["error"]')"
[ "$(st '["error_side"]')" = target ] || fail "on-target-error stop: side $(st '["error_side"]')"
"$VDISKCTL" mirror status "$g" | grep -q '^state: paused (.*error)' ||
    fail "status does not say paused by an error"
cmp_mounted "$g" "$tmpdir/full.orig" || fail "the source reads wrong while the job is stopped"
dd if="$tmpdir/pattern" of="$g" bs=1M seek=50 oflag=direct conv=notrunc status=none
dd if="$images/full.img" bs=1M skip=50 count=1 status=none | cmp - "$tmpdir/pattern" ||
    fail "a write while the job is stopped did not reach the source"
"$VDISKCTL" mirror cancel "$g" --force >/dev/null
[ "$(st '["state"]')" = cancelled ] || fail "state '$(st '["state"]')' after cancel --force"
rm -f "$small/target2.img"
unmount_vdiskfs
