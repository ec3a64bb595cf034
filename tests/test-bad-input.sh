#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Bad input gets a clear errno or message and changes nothing:
#  - ioctls with a wrong size in the command number, a wrong version or
#    size field, non-zero reserved bytes or pad, another direction: EINVAL;
#    unknown command numbers: ENOTTY (tests/ioctl-probe sends them);
#  - mutating ioctls on a read-only handle: EBADF;
#  - mutating ioctls from a caller who is neither root nor the owner, on an
#    image they may open for writing (allow_other, world-writable): EPERM;
#  - vdiskctl with missing or wrong arguments: exit 2; on a file that is
#    not in a vdiskfs mount: exit 1;
#  - vdiskfs with a mount point that does not exist, an IMAGE_DIR that is a
#    file or missing, bad option values: exit 2 with one line on stderr.
set -euo pipefail
VDISK_TEST_TIMEOUT=120
# The non-owner part runs as `nobody`, who must reach the mount: use a
# private directory under /tmp, not the build tree (whose parents may be
# closed to others).
VDISK_TEST_TMPBASE=/tmp
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires setpriv python3
requires_programs "$IOCTL_PROBE"

chmod 0755 "$tmpdir"
make_image disk.img 4 random
cp "$images/disk.img" "$tmpdir/orig"
mount_vdiskfs -o allow_other
f=$mnt/disk.img

# expect WANT FLAG SPEC...: run the probe on $f, compare its output.
expect ()
{
    local want=$1 flag=$2 got; shift 2
    got=$("$IOCTL_PROBE" "$flag" "$f" "$@" | tr '\n' ' ')
    got=${got% }
    [ "$got" = "$want" ] || fail "ioctl-probe $flag $*: got '$got', want '$want'"
}

# ---- well-formed requests work (so the refusals below mean something) ----
expect OK -w info
expect OK -w flush
expect OK -w stats-reset
expect "OK OK" -w drain-begin drain-end
expect OK -W flush                      # O_WRONLY is opened for writing
expect OK -r info                       # reading info needs no write access
expect 0 -r drain-depth

# ---- malformed requests: EINVAL, and none of them starts a drain --------
for cmd in info flush drain-begin drain-end stats-reset; do
    # Another size in the command number: the kernel copies that many bytes
    # and the daemon refuses the size.  (16383 is the largest encodable.)
    for size in 0 8 63 65 16383; do
        expect EINVAL -w "$cmd:size=$size"
    done
    # The size field in the struct disagrees with the struct's size.
    for sf in 0 8 4096 0xffffffff; do
        expect EINVAL -w "$cmd:sizefield=$sf"
    done
    # A version this daemon does not speak.
    for v in 0 2 0xffffffff; do
        expect EINVAL -w "$cmd:version=$v"
    done
    # Non-zero reserved bytes (first and a later one).
    expect EINVAL -w "$cmd:reserved=0"
    expect EINVAL -w "$cmd:reserved=40"
    # The right number with another direction: _IOR brings no input
    # struct to check, _IOW gives no room for the answer.
    expect EINVAL -w "$cmd:dir=r"
    expect EINVAL -w "$cmd:dir=w"
done
# The info struct is larger; its last reserved byte too.
expect EINVAL -w info:reserved=255
# drain-begin's pad must be zero.
expect EINVAL -w drain-begin:pad=1
expect 0 -r drain-depth

# ---- unknown command numbers: ENOTTY ----------------------------------
for nr in 0 6 7 31 32 200 255; do
    expect ENOTTY -w "raw:nr=$nr"
    expect ENOTTY -r "raw:nr=$nr:size=4096"
done
# another type letter (one the VFS does not intercept)
expect ENOTTY -w "raw:type=0xd8:nr=1"
expect ENOTTY -w "raw:type=0x7a:nr=9:size=128"

# ---- read-only handle: mutating commands answer EBADF -----------------
expect EBADF -r flush
expect EBADF -r stats-reset
expect EBADF -r drain-begin
expect EBADF -r drain-begin:timeout=5
expect EBADF -r drain-end
expect 0 -r drain-depth
cmp "$images/disk.img" "$tmpdir/orig"

# ---- a caller who is neither root nor the owner: EPERM ----------------
# The image belongs to root and is world-writable, so `nobody` opens it
# O_RDWR: the daemon's own check is what refuses.  A file `nobody` owns
# (mode 0600) shows the refusal is about ownership.
chown 0:0 "$images/disk.img"
chmod 0666 "$images/disk.img"
chmod 0755 "$images"
make_image own.img 1 zero
chown nobody: "$images/own.img"
chmod 0600 "$images/own.img"
as_nobody () { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
got=$(as_nobody "$IOCTL_PROBE" -w "$f" info flush drain-begin drain-end \
          stats-reset drain-depth | tr '\n' ' ')
[ "$got" = "OK EPERM EPERM EPERM EPERM 0 " ] ||
    fail "nobody on root's world-writable image: '$got'"
got=$(as_nobody "$IOCTL_PROBE" -w "$mnt/own.img" flush drain-begin drain-end \
          stats-reset | tr '\n' ' ')
[ "$got" = "OK OK OK OK " ] || fail "nobody on its own image: '$got'"
# default_permissions: the kernel refuses what the modes refuse.
chmod 0600 "$images/disk.img"
got=$(as_nobody "$IOCTL_PROBE" -r "$f" info) || true
[ "$got" = "open: EACCES" ] || fail "nobody opened a 0600 root image: '$got'"
cmp "$images/disk.img" "$tmpdir/orig"

# ---- vdiskctl: usage errors exit 2, failed operations exit 1 -----------
ctl_status ()
{
    local want=$1 rc=0; shift
    timeout 20 "$VDISKCTL" "$@" >"$tmpdir/ctl.out" 2>"$tmpdir/ctl.err" || rc=$?
    [ "$rc" -eq "$want" ] ||
        fail "vdiskctl $*: exit $rc, want $want ($(head -n 3 "$tmpdir/ctl.err"))"
    if [ "$want" -ne 0 ]; then
        [ -s "$tmpdir/ctl.err" ] || fail "vdiskctl $*: no message"
    fi
}
ctl_status 2                                    # no command
ctl_status 2 bogus "$f"                         # unknown command
ctl_status 2 info                               # missing FILE
ctl_status 2 info "$f" "$f"                     # extra argument
ctl_status 2 info --bogus "$f"                  # unknown option
ctl_status 2 flush
ctl_status 2 flush "$f" extra
ctl_status 2 stats-reset
ctl_status 2 drain "$f"                         # neither -- CMD nor --hold
ctl_status 2 drain "$f" --                      # empty command
ctl_status 2 drain --timeout=abc "$f" -- true   # not a number
ctl_status 2 drain --timeout=-1 "$f" -- true    # negative
ctl_status 2 drain --hold                       # missing FILE
ctl_status 0 --help
ctl_status 0 info --help
ctl_status 1 info "$tmpdir/no-such-file"        # ENOENT
ctl_status 1 info "$tmpdir/orig"                # not vdiskfs: ENOTTY
ctl_status 1 flush "$tmpdir/orig"
ctl_status 1 drain "$tmpdir/orig" -- true       # the drain cannot begin...
[ "$(info_json "$f" '["drain_depth"]')" -eq 0 ] || fail "drain_depth after bad vdiskctl calls"

unmount_vdiskfs

# ---- vdiskfs: bad start-up arguments exit 2 with one line ---------------
fs_status ()
{
    local rc=0
    timeout 20 "$VDISKFS" "$@" >"$tmpdir/fs.out" 2>"$tmpdir/fs.err" </dev/null ||
        rc=$?
    [ "$rc" -eq 2 ] || fail "vdiskfs $*: exit $rc, want 2 ($(head -n 3 "$tmpdir/fs.err"))"
    [ "$(wc -l < "$tmpdir/fs.err")" -eq 1 ] ||
        fail "vdiskfs $*: want one line on stderr, got: $(cat "$tmpdir/fs.err")"
    ! _is_mounted || fail "vdiskfs $* left a mount"
}
fs_status -f "$images" "$tmpdir/no-such-dir"           # mount point missing
fs_status -f "$tmpdir/orig" "$mnt"                     # IMAGE_DIR is a file
fs_status -f "$tmpdir/no-such-dir" "$mnt"              # IMAGE_DIR missing
fs_status -f "$images"                                 # MOUNTPOINT missing
fs_status -f                                           # nothing
fs_status -o aio=bogus -f "$images" "$mnt"             # bad value
fs_status -o cache=bogus -f "$images" "$mnt"
fs_status -o iothreads=0 -f "$images" "$mnt"
fs_status -o iothreads=abc -f "$images" "$mnt"
fs_status --log-level=bogus -f "$images" "$mnt"
fs_status --no-such-option -f "$images" "$mnt"
[ ! -e "$tmpdir/no-such-dir" ] || fail "vdiskfs created a directory"
