#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Drains through vdiskctl:
#  1. `vdiskctl drain FILE -- CMD`: a write through the mount that starts
#     during the drain does not reach the backing file while CMD runs (CMD
#     checks the backing file and exits 0 only if it is unchanged), and does
#     reach it once the drain ends; vdiskctl exits with CMD's status.
#  2. Killing a `vdiskctl drain --hold` (SIGKILL: no DRAIN_END is sent) ends
#     the drain, also while more requests are postponed than FUSE's
#     max_background (fio, 4 jobs at depth 32): fio then completes.
#     SIGTERM and stdin EOF end a hold too.
#  3. `--timeout=2` ends a forgotten drain (the holder stays alive with its
#     stdin open): the daemon ends it after about 2 s.
set -euo pipefail
VDISK_TEST_TIMEOUT=180
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires fio python3 cmp dd
requires_programs

make_image disk.img 64 random
head -c 64k /dev/urandom > "$tmpdir/pattern"
mount_vdiskfs
# Keep the image open throughout, so that its statistics (postponed,
# flushes) are those of one continuous opening.
exec {keep}<"$mnt/disk.img"

depth () { info_json "$mnt/disk.img" '["drain_depth"]'; }
postponed () { info_json "$mnt/disk.img" '["stats"]["postponed"]'; }
drain_over () { [ "$(depth)" -eq 0 ]; }

# ---- 1. drain -- CMD ------------------------------------------------------
cp "$images/disk.img" "$tmpdir/before"
"$VDISKCTL" stats-reset "$mnt/disk.img"
cat > "$tmpdir/in-drain.sh" <<'EOF'
# Runs inside the drain.  Start a writer through the mount, wait until the
# daemon has postponed its write, then check that the backing file has not
# changed and that the writer is still waiting.
set -u
( rc=0
  dd if="$tmpdir/pattern" of="$mnt/disk.img" bs=64k seek=3 count=1 \
     oflag=direct conv=notrunc status=none || rc=$?
  echo "$rc" > "$tmpdir/writer.rc" ) </dev/null >/dev/null 2>&1 &
echo $! > "$tmpdir/writer.pid"
[ "$(info_json "$mnt/disk.img" '["drain_depth"]')" -eq 1 ] || exit 11
held () { [ "$(info_json "$mnt/disk.img" '["stats"]["postponed"]')" -ge 1 ]; }
wait_until "$VDISK_WAIT_LIMIT" held || exit 12
cmp -s "$images/disk.img" "$tmpdir/before" || exit 13
[ ! -e "$tmpdir/writer.rc" ] || exit 14
exit 0
EOF
export tmpdir mnt images VDISKCTL VDISK_WAIT_LIMIT
export -f info_json wait_until _now_ms
rc=0
"$VDISKCTL" drain "$mnt/disk.img" -- bash "$tmpdir/in-drain.sh" || rc=$?
cleanup_kill "$(cat "$tmpdir/writer.pid")"
case $rc in
0)  ;;
11) fail "drain_depth was not 1 inside the drain" ;;
12) fail "the write through the mount was not postponed by the drain" ;;
13) fail "a write reached the backing file during the drain" ;;
14) fail "the writer finished during the drain" ;;
*)  fail "vdiskctl drain -- CMD exited $rc" ;;
esac
wait_until "$VDISK_WAIT_LIMIT" test -s "$tmpdir/writer.rc" ||
    fail "the postponed write did not complete after the drain"
[ "$(cat "$tmpdir/writer.rc")" -eq 0 ] || fail "the postponed write failed"
dd if="$images/disk.img" bs=64k skip=3 count=1 status=none |
    cmp - "$tmpdir/pattern" || fail "the postponed write is not in the backing file"
[ "$(depth)" -eq 0 ] || fail "drain_depth $(depth) after drain -- CMD"

# The exit status is the command's.
rc=0; "$VDISKCTL" drain "$mnt/disk.img" -- sh -c 'exit 3' || rc=$?
[ "$rc" -eq 3 ] || fail "drain -- sh -c 'exit 3' exited $rc"
# A drain flushes the image before the command runs.
f0=$(info_json "$mnt/disk.img" '["stats"]["flushes"]')
rc=0; "$VDISKCTL" drain --timeout=30 "$mnt/disk.img" -- true || rc=$?
[ "$rc" -eq 0 ] || fail "drain -- true exited $rc"
f1=$(info_json "$mnt/disk.img" '["stats"]["flushes"]')
[ "$f1" -gt "$f0" ] || fail "the drain did not flush (flushes $f0 -> $f1)"
# The drain's own handle is O_CLOEXEC: the command inherits no fd of the
# mount (or a leaked fd would keep the drain alive after vdiskctl exits).
leaks=$("$VDISKCTL" drain "$mnt/disk.img" -- \
        sh -c 'for f in /proc/$$/fd/*; do readlink "$f"; done' {keep}<&- |
        grep -c "^$mnt/" || true)
[ "$leaks" -eq 0 ] || fail "the drain's handle leaked into the command"
[ "$(depth)" -eq 0 ] || fail "drain_depth $(depth) after drain -- CMD"

# ---- 2. ending a held drain -----------------------------------------------
drained () { [ "$(depth)" -eq 1 ] || fail "drain_depth $(depth) while held"; }
hold_gone () { ! kill -0 "$hold_pid" 2>/dev/null; }

# 2a. SIGKILL of the holder while fio's 128 requests wait.
start_hold "$mnt/disk.img"; drained
"$VDISKCTL" stats-reset "$mnt/disk.img"
cp "$images/disk.img" "$tmpdir/before"
fio --name=held --filename="$mnt/disk.img" --ioengine=libaio --direct=1 \
    --iodepth=32 --numjobs=4 --rw=randwrite --bs=4k --size=4M \
    --offset_increment=16M --randrepeat=0 --verify=crc32c --verify_fatal=1 \
    --verify_state_save=0 \
    --output="$tmpdir/fio.out" &
fio_pid=$!
cleanup_kill "$fio_pid"
# fio submits 128 requests; the kernel passes up to max_background of
# them to the daemon and keeps the rest, so the background queue is full
# (no RELEASE could get through).  Wait until many are held (more than the
# kernel's default max_background of 12), then, not for correctness, give
# the rest a moment to arrive.
many () { [ "$(postponed)" -ge "$1" ]; }
wait_until "$VDISK_WAIT_LIMIT" many 32 || fail "only $(postponed) requests postponed"
wait_until 2 many 128 || true
cmp -s "$images/disk.img" "$tmpdir/before" ||
    fail "fio's writes reached the backing file during the drain"
echo "postponed before killing the holder: $(postponed)"
kill -KILL "$hold_pid"
wait_until "$VDISK_WAIT_LIMIT" drain_over ||
    fail "killing vdiskctl drain --hold did not end the drain (depth $(depth))"
fio_done () { ! kill -0 "$fio_pid" 2>/dev/null; }
wait_until 60 fio_done || fail "fio did not complete after the drain ended"
wait "$fio_pid" || { cat "$tmpdir/fio.out"; fail "fio failed after the drain"; }
wait "$hold_pid" 2>/dev/null || true
end_hold_fds

# 2b. SIGTERM of the holder: it ends the drain and exits 0.
start_hold "$mnt/disk.img"; drained
kill -TERM "$hold_pid"
wait_until "$VDISK_WAIT_LIMIT" hold_gone || fail "drain --hold ignored SIGTERM"
rc=0; wait "$hold_pid" || rc=$?
[ "$rc" -eq 0 ] || fail "drain --hold exited $rc on SIGTERM"
[ "$(depth)" -eq 0 ] || fail "SIGTERM of the holder left drain_depth $(depth)"
end_hold_fds

# 2c. EOF on the holder's stdin.
start_hold "$mnt/disk.img"; drained
exec {hold_in}>&-
wait_until "$VDISK_WAIT_LIMIT" hold_gone || fail "drain --hold ignored stdin EOF"
rc=0; wait "$hold_pid" || rc=$?
[ "$rc" -eq 0 ] || fail "drain --hold exited $rc on stdin EOF"
[ "$(depth)" -eq 0 ] || fail "stdin EOF left drain_depth $(depth)"
exec {hold_out}<&-

# ---- 3. the timeout ends a forgotten drain --------------------------------
start=$(_now_ms)
start_hold "$mnt/disk.img" --timeout=2; drained
wait_until 20 drain_over || fail "--timeout=2: drain still held after 20 s"
elapsed=$(( $(_now_ms) - start ))
echo "timed-out drain ended after $elapsed ms"
[ "$elapsed" -ge 1500 ] || fail "--timeout=2 drain ended after only $elapsed ms"
kill -0 "$hold_pid" || fail "the holder died: the daemon did not end the drain itself"
# I/O goes through again while the holder still lives.
timeout 20 dd if="$tmpdir/pattern" of="$mnt/disk.img" bs=64k count=1 \
    oflag=direct conv=notrunc status=none || fail "I/O after the drain timed out"
grep -qi 'drain' "$daemon_log" || fail "the daemon did not log that it ended the drain"
end_hold_fds
wait_until "$VDISK_WAIT_LIMIT" hold_gone || fail "drain --hold did not exit on stdin EOF"
wait "$hold_pid" 2>/dev/null || true

exec {keep}<&-
unmount_vdiskfs

# ---- 4. a holder killed while writeback pages wait -------------------------
# With cache=writeback, closing a handle writes the file's dirty pages
# back.  A holder killed while another process keeps dirty pages of the
# image gets stuck in its own exit: its close waits for writes that its
# drain postpones, so its pidfd never fires.  The daemon sees in /proc
# that the process is exiting and ends the drain.
mount_vdiskfs -o cache=writeback
python3 -c '
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"w" * 65536, 0)          # dirty pages, no fsync, no close
open(sys.argv[2], "w").write("written\n")
time.sleep(600)
' "$mnt/disk.img" "$tmpdir/dirty.ok" &
dirty_pid=$!
cleanup_kill "$dirty_pid"
wait_until "$VDISK_WAIT_LIMIT" test -s "$tmpdir/dirty.ok" ||
    fail "the writer did not write"
# No vdiskctl info while drained here: its own close would write the
# dirty pages back and wait for the drain.  The daemon's log says when
# the drain ends.
start_hold "$mnt/disk.img"
kill -KILL "$hold_pid"
ended () { grep -q "drain of disk.img ended: process $hold_pid exited" "$daemon_log"; }
wait_until 20 ended ||
    fail "a holder killed with dirty writeback pages kept the drain"
wait_until "$VDISK_WAIT_LIMIT" hold_gone ||
    fail "the killed holder never finished exiting"
[ "$(depth)" -eq 0 ] || fail "drain_depth $(depth) after the holder died"
end_hold_fds
kill -KILL "$dirty_pid"; wait "$dirty_pid" 2>/dev/null || true
unmount_vdiskfs
