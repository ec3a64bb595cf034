#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Durability across kill -9 of the daemon: a writer appends numbered 4 KiB
# records, fsyncs after each and logs each acknowledged number to a file
# outside the mount.  The daemon is killed mid-run.  Every acknowledged
# record must be in the backing file, and the engine's flush counter
# (vdiskctl info --json) must show that each acknowledged fsync reached the
# backing file: a daemon crash leaves the page cache alive, so the data
# alone would not prove the flush (power loss is not tested here).
#
# The counter check is exact: the writer pauses after PAUSE_AT records,
# and the counter, read while it is paused, must be at least the number of
# fsyncs acknowledged (counted from a stats-reset before the writer
# started).  Just before the kill the test reads the acknowledged count
# first and the counter second, so every fsync counted was acknowledged
# (and so completed) before the counter was read: again counter >= acks.
set -euo pipefail
VDISK_TEST_TIMEOUT=180
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires python3
requires_programs

PAUSE_AT=50
KILL_AFTER=100

cat > "$tmpdir/writer.py" <<'EOF'
import os, sys, time
path, acklog, paused, go = sys.argv[1:5]
pause_at = int(sys.argv[5])
fd = os.open(path, os.O_WRONLY)
log = open(acklog, "a", buffering=1)
n = 0
while True:
    n += 1
    rec = ("record %08d\n" % n).encode().ljust(4096, b".")
    os.pwrite(fd, rec, (n - 1) * 4096)   # append: each record grows the file
    os.fsync(fd)
    log.write("%d\n" % n)                # acknowledged
    if n == pause_at:
        open(paused, "w").close()
        while not os.path.exists(go):
            time.sleep(0.01)             # the test's poll is bounded
EOF

mkdir -p "$images"
acks () { wc -l < "$tmpdir/acks"; }

for cache in none writeback; do
    echo "== cache=$cache"
    rm -f "$images/log.img" "$tmpdir/acks" "$tmpdir/paused" "$tmpdir/go"
    : > "$images/log.img"
    : > "$tmpdir/acks"
    mount_vdiskfs -o cache="$cache"

    "$VDISKCTL" stats-reset "$mnt/log.img"
    [ "$(info_json "$mnt/log.img" '["stats"]["flushes"]')" -eq 0 ] ||
        fail "stats-reset did not zero the flush counter"

    python3 "$tmpdir/writer.py" "$mnt/log.img" "$tmpdir/acks" \
        "$tmpdir/paused" "$tmpdir/go" "$PAUSE_AT" 2>"$tmpdir/writer.err" &
    writer_pid=$!
    cleanup_kill "$writer_pid"

    # 1. Exact check while the writer is paused.
    wait_until 60 test -e "$tmpdir/paused" || fail "writer did not reach $PAUSE_AT"
    a=$(acks)
    f=$(info_json "$mnt/log.img" '["stats"]["flushes"]')
    echo "paused: $a fsyncs acknowledged, flush counter $f"
    [ "$a" -eq "$PAUSE_AT" ] || fail "paused writer has $a acks"
    [ "$f" -ge "$a" ] || fail "$a fsyncs acknowledged but only $f flushes reached the engine"
    : > "$tmpdir/go"

    # 2. Mid-run: acks first, counter second, then kill -9.
    enough () { [ "$(acks)" -ge "$KILL_AFTER" ]; }
    wait_until 60 enough || fail "writer stalled at $(acks) records"
    a=$(acks)
    f=$(info_json "$mnt/log.img" '["stats"]["flushes"]')
    kill -KILL "$vdiskfs_pid"
    daemon_killed
    echo "before the kill: $a fsyncs acknowledged, flush counter $f"
    [ "$f" -ge "$a" ] || fail "$a fsyncs acknowledged but only $f flushes reached the engine"

    # The writer now fails (the connection is gone); it must not hang.
    wait_until "$VDISK_WAIT_LIMIT" eval '! kill -0 "$writer_pid" 2>/dev/null' ||
        fail "the writer hangs after the daemon died"
    if wait "$writer_pid"; then fail "the writer went on without the daemon"; fi
    unmount_vdiskfs

    # 3. Every acknowledged record is in the backing file.
    final=$(acks)
    [ "$final" -ge "$a" ] || fail "ack log shrank"
    python3 - "$images/log.img" "$final" <<'EOF' || fail "acknowledged records are missing"
import sys
data = open(sys.argv[1], "rb").read()
n = int(sys.argv[2])
bad = [i for i in range(1, n + 1)
       if data[(i - 1) * 4096:i * 4096] != ("record %08d\n" % i).encode().ljust(4096, b".")]
if bad:
    print("missing or wrong acknowledged records: %s (of %d; file %d bytes)"
          % (bad[:10], n, len(data)))
    sys.exit(1)
print("all %d acknowledged records are in the backing file" % n)
EOF
done
