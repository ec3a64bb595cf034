#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# SIGTERM and SIGINT stop the daemon cleanly: exit status 0, no mount left,
# and what was written is in the backing file.  SIGTERM also ends a drain
# that a user holds: the write it postponed runs before the daemon exits.
# A daemon started without -f ends when its mount goes away.
set -euo pipefail
VDISK_TEST_TIMEOUT=120
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires python3 cmp dd
requires_programs

make_image disk.img 8 zero
head -c 1M /dev/urandom > "$tmpdir/pattern"

# SIGTERM while idle.
mount_vdiskfs
ls "$mnt" >/dev/null
unmount_vdiskfs TERM

# SIGINT while a process holds the file open for writing (and has written
# through it): the daemon exits 0 and the data is in the backing file.
mount_vdiskfs -o cache=writeback
exec {fd}<>"$mnt/disk.img"
dd if="$tmpdir/pattern" bs=64k status=none >&$fd
unmount_vdiskfs INT
exec {fd}>&-
cmp -n $((1 << 20)) "$images/disk.img" "$tmpdir/pattern"

# SIGTERM while a drain is held and a write waits for it.
dd if="$tmpdir/pattern" of="$images/disk.img" conv=notrunc status=none
mount_vdiskfs
start_hold "$mnt/disk.img"
# The writer records the result of its write; its close may fail, as the
# daemon takes no new request (the FLUSH of close) once it shuts down.
python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
import mmap
buf = mmap.mmap(-1, 65536)              # page-aligned zeros for O_DIRECT
try:
    r = str(os.pwritev(fd, [buf], 0))
except OSError as e:
    r = "error %s" % e
open(sys.argv[2], "w").write(r + "\n")
' "$mnt/disk.img" "$tmpdir/writer.rc" &
writer_pid=$!
cleanup_kill "$writer_pid"
postponed () { [ "$(info_json "$mnt/disk.img" '["stats"]["postponed"]')" -ge 1 ]; }
wait_until "$VDISK_WAIT_LIMIT" postponed || fail "the write was not postponed"
cmp -n 65536 "$images/disk.img" "$tmpdir/pattern" ||
    fail "a write went through a held drain"
unmount_vdiskfs TERM
wait_until "$VDISK_WAIT_LIMIT" test -s "$tmpdir/writer.rc" ||
    fail "the postponed writer never finished"
[ "$(cat "$tmpdir/writer.rc")" = 65536 ] ||
    fail "the postponed write failed at shutdown: $(cat "$tmpdir/writer.rc")"
cmp -n 65536 "$images/disk.img" /dev/zero ||
    fail "the postponed write did not reach the backing file"
end_hold_fds
wait_until "$VDISK_WAIT_LIMIT" eval '! kill -0 "$hold_pid" 2>/dev/null' ||
    fail "vdiskctl drain --hold did not exit after the daemon went away"

# Without -f the daemon forks into the background; an unmount must still
# end it (a helper thread created before the fork would make it wait
# forever at exit).
mkdir -p "$images" "$mnt"
"$VDISKFS" --pidfile="$tmpdir/bg.pid" "$images" "$mnt" </dev/null \
    2>>"$daemon_log" || fail "vdiskfs did not start in the background"
bg_pid=$(cat "$tmpdir/bg.pid")
_bg_unmount () { ! mountpoint -q "$1" || fusermount3 -u -z "$1"; }
cleanup_fn _bg_unmount "$mnt"
cleanup_kill "$bg_pid"
ls "$mnt" >/dev/null || fail "the background daemon does not serve"
fusermount3 -u "$mnt"
wait_until "$VDISK_WAIT_LIMIT" eval '! kill -0 "$bg_pid" 2>/dev/null' ||
    fail "the background daemon did not exit after the unmount"
