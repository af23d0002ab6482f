#!/usr/bin/env bash
# Build fastbp for aarch64 (ARM64) and run its whole test suite there, under
# qemu-user emulation, on an x86-64 Debian/Ubuntu machine (as root).  From a
# clean machine: installs qemu-user-static, binfmt-support and mmdebstrap,
# makes a Debian arm64 root file system with Python, GCC and the Python
# headers, copies this checkout (and ../shared, the book and MNIST the tests
# use, when it is there) into it, pip-installs NumPy, SciPy, ... (PyPI's
# manylinux aarch64 wheels) and fastbp itself (compiled by the arm64 GCC:
# no x86 flag, no x86 code path), prints `fastbp info`, and runs
# `pytest` on the installed package.  Exit status: pytest's.
#
#   tools/aarch64_test.sh [ROOTFS]      default /var/tmp/fastbp-aarch64
#
# The root file system is kept and reused (delete it for a fresh start);
# the checkout and the venv in it are made anew every run.  Emulation makes
# this slow (a build and the suite take tens of minutes on 2 cores) and its
# timings mean nothing: it checks that the portable code compiles and gives
# the reference's results on ARM, not its speed.
# FASTBP_AARCH64_PYTEST="-x -k relu" passes extra pytest arguments.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOTFS=${1:-/var/tmp/fastbp-aarch64}
SUITE=${FASTBP_AARCH64_SUITE:-bookworm}
START=$(date +%s)
say() { echo "== aarch64 [$(( $(date +%s) - START )) s] $*"; }

# 1. the emulator, registered with binfmt_misc so arm64 programs just run
#    (the F flag: the kernel opens qemu at registration, so it works inside
#    the chroot)
missing=()
command -v mmdebstrap > /dev/null || missing+=(mmdebstrap)
[ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
command -v update-binfmts > /dev/null || missing+=(binfmt-support)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -q > /dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" > /dev/null
fi
mountpoint -q /proc/sys/fs/binfmt_misc \
    || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] \
    || { echo "qemu-aarch64 is not registered with binfmt_misc" >&2; exit 1; }

# 2. a Debian arm64 root file system
if [ ! -x "$ROOTFS/usr/bin/python3" ]; then
    say "making a Debian $SUITE arm64 root file system in $ROOTFS"
    rm -rf "$ROOTFS"
    mmdebstrap --arch=arm64 --variant=apt --include=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates \
        "$SUITE" "$ROOTFS" > "$ROOTFS.log" 2>&1 || { tail -20 "$ROOTFS.log"; exit 1; }
fi
# this machine's network settings and CA bundle (a proxy's CA, if any)
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"

# 3. the checkout's tracked files (as they are in the work tree) and ../shared
rm -rf "$ROOTFS/work"
mkdir -p "$ROOTFS/work/fastbp"
git -C "$REPO" ls-files -z | (cd "$REPO" && xargs -0 tar -cf - --ignore-failed-read 2>/dev/null) \
    | tar -C "$ROOTFS/work/fastbp" -xf -
if [ -d "$REPO/../shared" ]; then cp -a "$REPO/../shared" "$ROOTFS/work/shared"; fi

mounts=(proc sys dev dev/pts)
cleanup() {
    for (( i=${#mounts[@]}-1; i>=0; i-- )); do
        umount -l "$ROOTFS/${mounts[$i]}" 2>/dev/null || true
    done
}
trap cleanup EXIT
mount -t proc proc "$ROOTFS/proc"
mount --rbind /sys "$ROOTFS/sys"
mount --bind /dev "$ROOTFS/dev"
mount --bind /dev/pts "$ROOTFS/dev/pts"

say "building and testing inside the arm64 system (uname -m: $(chroot "$ROOTFS" uname -m))"
set +e
chroot "$ROOTFS" /usr/bin/env -i HOME=/root PATH=/usr/local/bin:/usr/bin:/bin \
    LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
    MPLBACKEND=Agg FASTBP_AARCH64_PYTEST="${FASTBP_AARCH64_PYTEST:-}" \
    /bin/bash -euo pipefail -c '
cd /work
python3 -m venv venv
. venv/bin/activate
t0=$(date +%s)
pip install -q --upgrade pip "setuptools>=77" wheel cython numpy scipy pytest hypothesis \
    threadpoolctl tqdm matplotlib joblib
echo "== dependencies in $(( $(date +%s) - t0 )) s: $(python -c "import numpy, scipy; print(\"numpy\", numpy.__version__, \"scipy\", scipy.__version__)")"
cd fastbp
t0=$(date +%s)
pip install -v --no-build-isolation ".[test,plot]" > /work/install.log 2>&1 \
    || { tail -40 /work/install.log; exit 1; }
echo "== fastbp built in $(( $(date +%s) - t0 )) s"
if grep -E "fastbp/.*warning:" /work/install.log; then echo "compiler warnings in fastbp"; exit 1; fi
grep -E "^\s*fastbp: " /work/install.log || true
fastbp info
t0=$(date +%s)
# shellcheck disable=SC2086
FASTBP_EXPECT_INSTALLED=1 FASTBP_EXPECT_OPENMP=1 pytest -q -p no:cacheprovider $FASTBP_AARCH64_PYTEST
echo "== suite in $(( $(date +%s) - t0 )) s"
'
status=$?
say "done: exit status $status"
exit $status
