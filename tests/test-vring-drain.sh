#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# A vring test and a drain.  While `vdiskctl drain -- CMD` runs, the test
# (randwrite at depth 4, writing without a pause before the drain) writes
# nothing to the backing file: the device pops nothing while the image is
# drained, so the guest's next requests stay in the ring.  CMD waits until
# the test's count of completed writes holds still across two looks
# 200 ms apart (every request in flight at the drain's start has been
# reaped: the guest then has its 4 new ones outstanding), then checks, at
# the start and across another half second, that neither the backing
# file's checksum nor that count moves and that the test still runs.
# Once the drain ends the test goes on, writes again, completes, and its
# read-back verification passes.
set -euo pipefail
VDISK_TEST_TIMEOUT=180
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires python3 sha256sum
requires_programs

make_image disk.img 32 random
mount_vdiskfs
f=$mnt/disk.img
depth=4

# st PYEXPR: of the image's vring test status.
st ()
{
    "$VDISKCTL" vring-test "$f" --status --json |
        python3 -c "import json, sys; print(json.load(sys.stdin)$1)"
}
writes_done () { [ "$(st '["state"]')" = running ] && [ "$(st '["ops"]["out"]')" -gt 100 ]; }

"$VDISKCTL" vring-test "$f" --rw randwrite --iodepth "$depth" --seconds 6 \
    --verify --json > "$tmpdir/vring.json" 2> "$tmpdir/vring.err" &
vr=$!
cleanup_kill "$vr"
wait_until "$VDISK_WAIT_LIMIT" writes_done || fail "the vring test does not write"

cat > "$tmpdir/in-drain.sh" <<'EOF'
# Runs inside the drain.
set -u
held () {
    local a
    a=$(st '["ops"]["out"]')
    sleep 0.2                # the interval between two looks
    [ "$(st '["ops"]["out"]')" = "$a" ]
}
wait_until "$VDISK_WAIT_LIMIT" held || exit 11
[ "$(st '["state"]')" = running ] || exit 12
sum1=$(sha256sum < "$images/disk.img")
out1=$(st '["ops"]["out"]')
t1=$(_now_ms)
# Not a wait for correctness: room for a violation to show.
while [ $(( $(_now_ms) - t1 )) -lt 500 ]; do
    [ "$(st '["ops"]["out"]')" = "$out1" ] || exit 14
    sleep 0.05
done
[ "$(sha256sum < "$images/disk.img")" = "$sum1" ] || exit 13
[ "$(st '["ops"]["out"]')" = "$out1" ] || exit 14
[ "$(st '["state"]')" = running ] || exit 12
echo "$sum1" > "$tmpdir/drained.sum"
exit 0
EOF
export f images tmpdir VDISKCTL VDISK_WAIT_LIMIT
export -f info_json wait_until _now_ms st
rc=0
"$VDISKCTL" drain "$f" -- bash "$tmpdir/in-drain.sh" || rc=$?
case $rc in
0)  ;;
11) fail "vring writes kept completing during the drain" ;;
12) fail "the vring test did not run through the drain" ;;
13) fail "the backing file changed during the drain" ;;
14) fail "vring writes completed during the drain" ;;
*)  fail "vdiskctl drain -- CMD exited $rc" ;;
esac

# After the drain: the test writes again and completes with its
# read-back pass.
moved () { [ "$(sha256sum < "$images/disk.img")" != "$(cat "$tmpdir/drained.sum")" ]; }
wait_until "$VDISK_WAIT_LIMIT" moved || fail "no write after the drain"
rc=0; wait "$vr" || rc=$?
[ "$rc" -eq 0 ] || fail "the vring test exited $rc: $(cat "$tmpdir/vring.err")"
python3 - "$tmpdir/vring.json" <<'EOF' || fail "the vring test's results"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["state"] == "done", d["state"]
assert d["verify_checked"] > 0 and d["verify_mismatches"] == 0, d
assert d["unexpected"] == 0 and d["ok"] is True, d
EOF
[ "$(info_json "$f" '["drain_depth"]')" -eq 0 ] || fail "a drain is left"
exit 0
