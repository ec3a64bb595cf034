#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Quick start on a fresh Debian 12 machine, as root:
#
#   contrib/quickstart.sh          install what is missing, build, and mount
#                                  the demo image directory demo/images at
#                                  demo/mnt in the foreground (Ctrl-C stops)
#   contrib/quickstart.sh IMAGE_DIR MOUNTPOINT
#                                  the same with your own directories
#   contrib/quickstart.sh check    install what is missing, then every test
#                                  pass: the -Werror build's make check, the
#                                  ASan/UBSan build's make check, and the
#                                  TSan build's unit tests
#
# Builds go to _build/<pass>/ beside the sources, so the source tree stays
# clean.  Every pass runs even when an earlier one failed; the exit status
# says whether all passed.
set -euo pipefail

usage() {
	cat <<USAGE
Usage: contrib/quickstart.sh [run | IMAGE_DIR MOUNTPOINT | check | --help]

  run     (default) install the Debian packages that are missing, build
          vdiskfs and mount demo/images (with a 1 GiB sparse disk0.img)
          at demo/mnt in the foreground; Ctrl-C unmounts
  IMAGE_DIR MOUNTPOINT
          the same, mounting IMAGE_DIR at MOUNTPOINT
  check   the same set-up, then make check in the -Werror build, the
          ASan/UBSan build and (unit tests only) the TSan build
USAGE
}

mode=${1:-run}
image_dir=""
mountpoint=""
case "$mode" in
run|check)
	[ $# -le 1 ] || { echo "quickstart.sh: '$mode' takes no arguments" >&2; exit 2; } ;;
-h|--help) usage; exit 0 ;;
-*) echo "quickstart.sh: unknown option '$mode'" >&2; usage >&2; exit 2 ;;
*)
	if [ $# -ne 2 ]; then
		echo "quickstart.sh: give both IMAGE_DIR and MOUNTPOINT" >&2
		usage >&2
		exit 2
	fi
	image_dir=$1
	mountpoint=$2
	mode=run
	;;
esac

srcdir=$(cd "$(dirname "$0")/.." && pwd)
builddir="$srcdir/_build"
jobs=$(nproc 2>/dev/null || echo 2)

# Everything the build, the tests and the benchmarks need.
packages=(build-essential autoconf automake libtool pkg-config
	libfuse3-dev fuse3 libaio-dev liburcu-dev libcmocka-dev
	valgrind fio qemu-utils qemu-system-common python3)

install_missing() {
	local missing=() p
	for p in "${packages[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		echo "quickstart.sh: missing packages: ${missing[*]}" >&2
		echo "quickstart.sh: run as root, or install them first" >&2
		exit 1
	fi
	echo "quickstart.sh: installing ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}"
}

# configure_build NAME CONFIGURE-ARGS...: (re)configure _build/NAME.
configure_build() {
	local name=$1; shift
	mkdir -p "$builddir/$name"
	(cd "$builddir/$name" && "$srcdir/configure" -q "$@")
}

install_missing
(cd "$srcdir" && autoreconf -fi >/dev/null)

if [ "$mode" = run ]; then
	configure_build default --enable-werror
	make -C "$builddir/default" -j"$jobs" >/dev/null
	if [ -z "$image_dir" ]; then
		image_dir="$srcdir/demo/images"
		mountpoint="$srcdir/demo/mnt"
		mkdir -p "$image_dir" "$mountpoint"
		[ -e "$image_dir/disk0.img" ] ||
			truncate -s 1G "$image_dir/disk0.img"
	fi
	cat <<TRY

quickstart.sh: mounting $image_dir at $mountpoint (foreground).
Try, in another terminal:
  ls -l $mountpoint
  qemu-img info $mountpoint/disk0.img
  dd if=/dev/urandom of=$mountpoint/disk0.img bs=1M count=16 oflag=direct conv=notrunc
  $builddir/default/src/vdiskctl info $mountpoint/disk0.img
Stop with Ctrl-C here, or: fusermount3 -u $mountpoint
TRY
	exec "$builddir/default/src/vdiskfs" -f "$image_dir" "$mountpoint"
fi

failed=0
rm -f "$builddir"/*/test-suite.log

run_pass() {
	local name=$1; shift
	echo "quickstart.sh: === pass '$name' ==="
	if ! configure_build "$name" "$@" ||
	   ! make -C "$builddir/$name" -j"$jobs" >/dev/null ||
	   ! make -C "$builddir/$name" -j"$jobs" check; then
		echo "quickstart.sh: pass '$name' FAILED" >&2
		failed=1
	fi
}

run_pass werror --enable-werror
run_pass asan --enable-werror --enable-sanitizers
run_pass tsan --enable-werror --enable-tsan

exit $failed
