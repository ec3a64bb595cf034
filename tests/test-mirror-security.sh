#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Where a mirror may write, and who may start and steer one.  Each refusal
# is checked twice: through vdiskctl (exit 1 and the message that names
# the errno and why) and, where vdiskctl would have changed the path on
# its way (it canonicalises TARGET), by sending the raw path with
# tests/ioctl-probe, which prints the errno the daemon answered.  After
# every refusal nothing was created and nothing was changed.
#  1. Targets: outside mirror_dir, or in a sibling whose name merely starts
#     like it (EPERM); with a ".." component, even one that stays inside
#     (EPERM); through a symlink that leads out, or an absolute symlink
#     (EPERM), while a relative symlink that stays inside works; an
#     existing name without --existing (EEXIST); with --existing a FIFO (no
#     hang), a directory, a symlink as the last component, or a file
#     smaller than the image (EINVAL).
#  2. Owners: `nobody` mirrors its own image to a new target (created mode
#     0600, owned by nobody) and onto an existing file of its own, but not
#     onto root's file (EPERM); root may take anyone's file.
#  3. A caller who is neither root nor the image's owner, on a
#     world-writable root image that it opens for writing (mount with
#     allow_other), is refused by the daemon (EPERM) for start, pause,
#     resume, set-speed, complete and cancel, and may still read the
#     status; the job goes on untouched.
#  4. Without -o mirror_dir every start is refused (EPERM).
set -euo pipefail
VDISK_TEST_TIMEOUT=120
# `nobody` must reach the mount and mirror_dir: a private directory under
# /tmp, not the build tree (whose parents may be closed to others).
VDISK_TEST_TMPBASE=/tmp
source "$top_srcdir/tests/functions.sh"
requires_fuse
requires_root
requires setpriv python3 cmp cksum mkfifo
requires_programs "$IOCTL_PROBE"

umask 022
chmod 0755 "$tmpdir"
mirror=$tmpdir/mirror
mkdir -p "$mirror/sub" "$tmpdir/elsewhere" "$mirror-evil"
make_image disk.img 64 random
chmod 0755 "$images"
mount_vdiskfs -o allow_other -o mirror_dir="$mirror"
f=$mnt/disk.img
sum () { cksum < "$1"; }

# probe_start WANT TARGET [SETTINGS]: MIRROR_START with the raw TARGET.
probe_start ()
{
    local got
    got=$("$IOCTL_PROBE" -w "$f" "mirror-start:target=$2${3:-}")
    [ "$got" = "$1" ] || fail "MIRROR_START of '$2': got $got, want $1"
}

# no_job: nothing started on disk.img (state none, or the last one over).
no_job ()
{
    mirror_state_is "$f" none cancelled concluded failed ||
        fail "a refused start left a job: $(mirror_json "$f" '["state"]')"
}

EPERM_OUT='mirror start: Operation not permitted \(the target is outside the daemon.s mirror_dir'

# ---- 1. targets ---------------------------------------------------------
ctl_expect 1 "$EPERM_OUT" mirror start "$f" "$tmpdir/outside.img"
probe_start EPERM "$tmpdir/outside.img"
[ ! -e "$tmpdir/outside.img" ] || fail "a target outside mirror_dir was created"
ctl_expect 1 "$EPERM_OUT" mirror start "$f" "$mirror-evil/x.img"
probe_start EPERM "$mirror-evil/x.img"
[ ! -e "$mirror-evil/x.img" ] || fail "a target in a look-alike directory was created"
ctl_expect 1 "$EPERM_OUT" mirror start "$f" /x.img
probe_start EPERM /x.img
[ ! -e /x.img ] || fail "a target at / was created"

# ".." : vdiskctl resolves it (and lands outside); the daemon refuses any.
ctl_expect 1 "$EPERM_OUT" mirror start "$f" "$mirror/../escape.img"
probe_start EPERM "$mirror/../escape.img"
probe_start EPERM "$mirror/sub/../inside.img"
probe_start EPERM "$mirror/sub/.."
[ ! -e "$tmpdir/escape.img" ] || fail "a '..' target escaped"
[ ! -e "$mirror/inside.img" ] || fail "a '..' target was created"

# Symlinks in directory components.
ln -s "$tmpdir/elsewhere" "$mirror/out-link"
ln -s "$mirror/sub" "$mirror/abs-link"
ln -s sub "$mirror/rel-link"
ln -s ../elsewhere "$mirror/up-link"
ctl_expect 1 "$EPERM_OUT" mirror start "$f" "$mirror/out-link/x.img"
probe_start EPERM "$mirror/out-link/x.img"
probe_start EPERM "$mirror/up-link/x.img"
probe_start EPERM "$mirror/abs-link/x.img"
[ -z "$(ls -A "$tmpdir/elsewhere")" ] || fail "a symlink led a target out of mirror_dir"
[ ! -e "$mirror/sub/x.img" ] || fail "an absolute symlink was followed"
no_job
# A relative symlink that stays inside is fine (speed-limited: the job
# stays running until it is cancelled).
probe_start OK "$mirror/rel-link/y.img" ":speed=1048576"
[ -f "$mirror/sub/y.img" ] || fail "the target behind a relative symlink is missing"
"$VDISKCTL" mirror cancel "$f" --force >/dev/null

# Existing names.
head -c 64M /dev/urandom > "$mirror/exists.img"
s_exists=$(sum "$mirror/exists.img")
ctl_expect 1 'mirror start: File exists \(target exists; use --existing' \
    mirror start "$f" "$mirror/exists.img"
probe_start EEXIST "$mirror/exists.img"
[ "$(sum "$mirror/exists.img")" = "$s_exists" ] || fail "a refused start changed the file"

EINVAL_OUT='mirror start: Invalid argument \(bad parameter, or the target is not a regular file'
mkfifo "$mirror/fifo.img"
ctl_expect 1 'File exists' mirror start "$f" "$mirror/fifo.img"
ctl_expect 1 "$EINVAL_OUT" mirror start "$f" "$mirror/fifo.img" --existing
mkdir "$mirror/dir.img"
ctl_expect 1 "$EINVAL_OUT" mirror start "$f" "$mirror/dir.img" --existing
head -c 64M /dev/urandom > "$tmpdir/victim.img"
s_victim=$(sum "$tmpdir/victim.img")
ln -s "$tmpdir/victim.img" "$mirror/final-link.img"
ctl_expect 1 'File exists' mirror start "$f" "$mirror/final-link.img"
ctl_expect 1 "$EINVAL_OUT" mirror start "$f" "$mirror/final-link.img" --existing
ln -s exists.img "$mirror/rel-final.img"
ctl_expect 1 "$EINVAL_OUT" mirror start "$f" "$mirror/rel-final.img" --existing
head -c 32M /dev/urandom > "$mirror/small.img"
ctl_expect 1 "$EINVAL_OUT" mirror start "$f" "$mirror/small.img" --existing
[ "$(stat -c %s "$mirror/small.img")" -eq $((32 << 20)) ] || fail "a refused start grew the file"
[ "$(sum "$tmpdir/victim.img")" = "$s_victim" ] || fail "the file behind a symlink changed"
[ "$(sum "$mirror/exists.img")" = "$s_exists" ] || fail "the file behind a symlink changed"
no_job
# The daemon still answers (the FIFO did not block a thread for good).
timeout 20 "$VDISKCTL" info "$f" >/dev/null || fail "the daemon no longer answers"

# ---- 2. whose files nobody may take -----------------------------------------
make_image own.img 64 random
chown nobody: "$images/own.img"
chmod 0600 "$images/own.img"
o=$mnt/own.img
head -c 64M /dev/urandom > "$mirror/roots.img"
chmod 0666 "$mirror/roots.img"          # writable by all: ownership decides
s_roots=$(sum "$mirror/roots.img")
rc=0
as_nobody "$VDISKCTL" mirror start "$o" "$mirror/roots.img" --existing \
    >"$tmpdir/ctl.out" 2>"$tmpdir/ctl.err" || rc=$?
[ "$rc" -eq 1 ] || fail "nobody took root's target: exit $rc"
grep -q 'mirror start: Operation not permitted (.*the target belongs to another user' \
    "$tmpdir/ctl.err" || fail "nobody onto root's target: $(cat "$tmpdir/ctl.err")"
[ "$(sum "$mirror/roots.img")" = "$s_roots" ] || fail "root's target changed"
# Its own new target: created 0600 and owned by nobody.
as_nobody "$VDISKCTL" mirror start "$o" "$mirror/nobodys.img" >/dev/null ||
    fail "nobody could not mirror its own image"
[ "$(stat -c '%U %a' "$mirror/nobodys.img")" = "nobody 600" ] ||
    fail "new target: $(stat -c '%U %a' "$mirror/nobodys.img")"
as_nobody "$VDISKCTL" mirror wait "$o" --ready --timeout 60
as_nobody "$VDISKCTL" mirror cancel "$o" >/dev/null
cmp "$images/own.img" "$mirror/nobodys.img" || fail "nobody's copy differs"
# Its own existing file.
as_nobody "$VDISKCTL" mirror start "$o" "$mirror/nobodys.img" --existing >/dev/null ||
    fail "nobody could not mirror onto its own file"
as_nobody "$VDISKCTL" mirror cancel "$o" --force >/dev/null
# Root may take anyone's file.
"$VDISKCTL" mirror start "$f" "$mirror/nobodys.img" --existing >/dev/null ||
    fail "root could not mirror onto nobody's file"
"$VDISKCTL" mirror cancel "$f" --force >/dev/null

# ---- 3. neither root nor the image's owner -----------------------------------
chmod 0666 "$images/disk.img"          # nobody opens it for writing
rc=0
as_nobody "$VDISKCTL" mirror start "$f" "$mirror/by-nobody.img" \
    >"$tmpdir/ctl.out" 2>"$tmpdir/ctl.err" || rc=$?
[ "$rc" -eq 1 ] || fail "nobody started a mirror of root's image: exit $rc"
grep -q "mirror start: Operation not permitted (.*neither root nor the image's owner" \
    "$tmpdir/ctl.err" || fail "nobody's start: $(cat "$tmpdir/ctl.err")"
[ ! -e "$mirror/by-nobody.img" ] || fail "a refused start created its target"
got=$(as_nobody "$IOCTL_PROBE" -w "$f" "mirror-start:target=$mirror/by-nobody.img" mirror-state)
[ "$got" = "EPERM"$'\n'"cancelled" ] || fail "nobody's MIRROR_START: '$got'"
# A job of root's: nobody may look, not touch.
"$VDISKCTL" mirror start "$f" "$mirror/root-job.img" --speed 1M >/dev/null
got=$(as_nobody "$IOCTL_PROBE" -w "$f" mirror-pause mirror-resume \
          mirror-set-speed:speed=0 mirror-complete mirror-cancel \
          mirror-cancel:flags=1 mirror-status mirror-state | tr '\n' ' ')
[ "$got" = "EPERM EPERM EPERM EPERM EPERM EPERM OK running " ] ||
    fail "nobody on root's job: '$got'"
for cmd in pause resume complete cancel; do
    rc=0
    as_nobody "$VDISKCTL" mirror "$cmd" "$f" >/dev/null 2>"$tmpdir/ctl.err" || rc=$?
    [ "$rc" -eq 1 ] || fail "nobody's mirror $cmd: exit $rc"
    grep -q "mirror $cmd: Operation not permitted" "$tmpdir/ctl.err" ||
        fail "nobody's mirror $cmd: $(cat "$tmpdir/ctl.err")"
done
as_nobody "$VDISKCTL" mirror status "$f" | grep -qx 'state: running' ||
    fail "nobody cannot read the status"
[ "$(mirror_json "$f" '["speed"]')" -eq $((1 << 20)) ] || fail "nobody changed the speed"
[ "$(mirror_json "$f" '["state"]')" = running ] || fail "nobody changed the job"
"$VDISKCTL" mirror cancel "$f" --force >/dev/null
unmount_vdiskfs

# ---- 4. no mirror_dir -------------------------------------------------------
mount_vdiskfs
ctl_expect 1 'mirror start: Operation not permitted \(.*no mirror_dir is configured' \
    mirror start "$f" "$mirror/none.img"
probe_start EPERM "$mirror/none.img"
[ ! -e "$mirror/none.img" ] || fail "a target was created without mirror_dir"
[ "$(mirror_json "$f" '["state"]')" = none ] || fail "a job without mirror_dir"
unmount_vdiskfs
