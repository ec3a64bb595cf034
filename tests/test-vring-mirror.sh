#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A vring writer and a mirror job:
#  1. The writer (randwrite at depth 8 with --verify) runs while the
#     mirror copies; once it is done, `mirror wait --ready` and `mirror
#     complete`: the target equals the source, byte for byte, and the
#     mount is served from the target.
#  2. A mirror of another image completes while a writer runs across the
#     switch: its requests, held by the complete's drain, go to the target,
#     and its read-back verification, after the switch, finds every block
#     it wrote; the mount then equals the target.
set -euo pipefail
VDISK_TEST_TIMEOUT=240
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires python3 cmp
requires_programs

mkdir -p "$tmpdir/mirror"
make_image disk.img 32 random
make_image other.img 32 random
mount_vdiskfs -o mirror_dir="$tmpdir/mirror"
f=$mnt/disk.img

st () { "$VDISKCTL" vring-test "$f" --status --json |
        python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
writing () { [ "$(st '["state"]')" = running ] && [ "$(st '["ops"]["out"]')" -gt 0 ]; }

# check_vring JSON: the test ran its course and verified what it wrote.
check_vring ()
{
    python3 - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["state"] == "done", d["state"]
assert d["ops"]["out"] > 0, d["ops"]
assert d["verify_checked"] > 0 and d["verify_mismatches"] == 0, d
assert d["unexpected"] == 0 and d["ok"] is True, d
EOF
}

# ---- 1. a writer during the copy ------------------------------------------
"$VDISKCTL" vring-test "$f" --rw randwrite --iodepth 8 --seconds 3 --verify \
    --json > "$tmpdir/vring1.json" 2> "$tmpdir/vring1.err" &
vr=$!
cleanup_kill "$vr"
wait_until "$VDISK_WAIT_LIMIT" writing || fail "the writer does not write"
"$VDISKCTL" mirror start "$f" "$tmpdir/mirror/disk.img" > /dev/null ||
    fail "mirror start failed"
rc=0; wait "$vr" || rc=$?
[ "$rc" -eq 0 ] || fail "writer 1 exited $rc: $(cat "$tmpdir/vring1.err")"
check_vring "$tmpdir/vring1.json" || fail "writer 1's results"
"$VDISKCTL" mirror wait "$f" --ready --timeout 60 || fail "mirror 1 not ready"
"$VDISKCTL" mirror complete "$f" --timeout 60 > /dev/null ||
    fail "mirror 1 did not complete"
cmp "$images/disk.img" "$tmpdir/mirror/disk.img" ||
    fail "mirror 1: the target differs from the source"
[ "$(info_json "$f" '["backing"]')" = "$tmpdir/mirror/disk.img" ] ||
    fail "mirror 1: the mount is not served from the target"

# ---- 2. a writer across the switch ----------------------------------------
f=$mnt/other.img
"$VDISKCTL" mirror start "$f" "$tmpdir/mirror/other.img" > /dev/null ||
    fail "mirror 2 start failed"
"$VDISKCTL" mirror wait "$f" --ready --timeout 60 || fail "mirror 2 not ready"
"$VDISKCTL" vring-test "$f" --rw randwrite --iodepth 8 --seconds 4 --verify \
    --json > "$tmpdir/vring2.json" 2> "$tmpdir/vring2.err" &
vr=$!
cleanup_kill "$vr"
wait_until "$VDISK_WAIT_LIMIT" writing || fail "writer 2 does not write"
"$VDISKCTL" mirror complete "$f" --timeout 60 > /dev/null ||
    fail "mirror 2 did not complete"
[ "$(st '["state"]')" = running ] ||
    echo "$0: note: writer 2 ended before the switch" >&2
rc=0; wait "$vr" || rc=$?
[ "$rc" -eq 0 ] || fail "writer 2 exited $rc: $(cat "$tmpdir/vring2.err")"
check_vring "$tmpdir/vring2.json" || fail "writer 2's results"
[ "$(info_json "$f" '["backing"]')" = "$tmpdir/mirror/other.img" ] ||
    fail "mirror 2: the mount is not served from the target"
cmp "$f" "$tmpdir/mirror/other.img" || fail "mirror 2: mount and target differ"
exit 0
