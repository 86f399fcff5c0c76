#!/usr/bin/env bash
# NUMA placement on two nodes, checked in a 2-node qemu guest (this machine has one node).
#
#   tests/numa2/run.sh [BUILD_DIR] [--bench-json FILE]
#
# Boots Debian's own kernel under qemu with two NUMA nodes (one CPU and 512 MiB each, SLIT distance
# 21) and an initramfs of busybox plus two static executables built in BUILD_DIR (default build):
#   numa2_guest_test   strict and preferred binding to each node from a thread on each node (100 %
#                      of pages on the bound node, every allocation succeeds: the mimalloc 2.0.9
#                      cross-node trap), bad nodes failing cleanly, a region handed to a thread on
#                      the other node, a reused slot following its new binding;
#   numa2_guest_bench  the NUMA benchmark's 2 x 2 matrix at toy sizes: its placement census is
#                      real, its times are not (qemu models the topology, not memory speed).
# Exits non-zero unless every check in the guest passed.  --bench-json saves the guest benchmark's
# output for the report.  Everything comes from Debian packages (installed here when missing, as
# root); the kernel package is downloaded once into BUILD_DIR/numa2-guest.  About 20 s with the
# packages present.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build
bench_json=""
while [ $# -gt 0 ]; do
  case "$1" in
    --bench-json) bench_json="$2"; shift 2 ;;
    -*) echo "usage: tests/numa2/run.sh [BUILD_DIR] [--bench-json FILE]" >&2; exit 2 ;;
    *) build="$1"; shift ;;
  esac
done
for exe in numa2_guest_test numa2_guest_bench; do
  if [ ! -x "$build/tests/numa2/$exe" ]; then
    echo "numa2: $build/tests/numa2/$exe is missing: build with tests enabled and libnuma-dev's static libnuma.a" >&2
    exit 1
  fi
done

# ---- packages: qemu, a static busybox, cpio --------------------------------------------------------
if ! command -v qemu-system-x86_64 >/dev/null || [ ! -x /bin/busybox ] || ! command -v cpio >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "numa2: needs qemu-system-x86 busybox-static cpio; run as root or install them" >&2
    exit 1
  fi
  apt-get install -y --no-install-recommends qemu-system-x86 busybox-static cpio >/dev/null
fi

# ---- the guest kernel: Debian's current amd64 kernel package, unpacked once -------------------------
guest="$build/numa2-guest"
mkdir -p "$guest"
if [ ! -f "$guest/vmlinuz" ]; then
  package=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$package" ] || { echo "numa2: apt-cache finds no kernel package behind linux-image-amd64" >&2; exit 1; }
  echo "numa2: downloading $package (once)"
  (cd "$guest" && rm -rf deb unpacked && mkdir deb && cd deb && apt-get download "$package" >/dev/null 2>&1)
  dpkg-deb -x "$guest"/deb/*.deb "$guest/unpacked"
  cp "$guest"/unpacked/boot/vmlinuz-* "$guest/vmlinuz"
  rm -rf "$guest/deb" "$guest/unpacked"
fi

# ---- the initramfs: busybox, the two executables, an init that runs them and powers off -------------
root="$guest/root"
rm -rf "$root"
mkdir -p "$root/bin"
cp /bin/busybox "$root/bin/busybox"
cp "$build/tests/numa2/numa2_guest_test" "$build/tests/numa2/numa2_guest_bench" "$root/"
cat > "$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "numa2: guest up, $(ls -d /sys/devices/system/node/node* | wc -l) nodes"
/numa2_guest_test
echo "numa2: guest test status $?"
/numa2_guest_bench --chase-mib 8 --triad-mib 4 --steps 200000 --runs 1 > /bench.json
echo "numa2: guest bench status $?"
echo "numa2: bench json begin"
cat /bench.json
echo "numa2: bench json end"
poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) > "$guest/initramfs.gz"

# ---- boot: two nodes, one CPU and 512 MiB each, under emulation (TCG) ------------------------------
# Not KVM even where /dev/kvm exists: on these VMs qemu's KVM start aborts on -cpu max (an MSR the
# host refuses), and placement, what this checks, does not need it.
# A boot under TCG takes 10-20 s here; once in a while (seen 2026-12-01) it hangs before the kernel
# prints anything, so a run that never finished its test gets one more try.
log="$guest/console.log"
for attempt in 1 2; do
  start=$(date +%s)
  timeout 240 qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 2 -m 1G \
    -object memory-backend-ram,id=m0,size=512M -object memory-backend-ram,id=m1,size=512M \
    -numa node,nodeid=0,cpus=0,memdev=m0 -numa node,nodeid=1,cpus=1,memdev=m1 -numa dist,src=0,dst=1,val=21 \
    -kernel "$guest/vmlinuz" -initrd "$guest/initramfs.gz" -append "console=ttyS0 quiet panic=-1" \
    -nographic -no-reboot > "$log" 2>&1 || true
  tr -d '\r' < "$log" > "$log.txt"
  grep -q '^numa2: guest test status' "$log.txt" && break
  echo "numa2: attempt $attempt: the guest did not finish in 240 s (console: $(tail -c 200 "$log.txt" | tr '\n' ' '))"
done
grep -E '^(ok|FAIL|     census|guest:|numa2:)' "$log.txt" | grep -v 'bench json' || true
echo "numa2: guest ran for $(( $(date +%s) - start )) s"

if [ -n "$bench_json" ]; then
  sed -n '/^numa2: bench json begin/,/^numa2: bench json end/p' "$log.txt" | sed '1d;$d' > "$bench_json"
fi
if grep -q '^numa2: guest test status 0$' "$log.txt" && grep -qE '^guest: [0-9]+ checks, 0 failed$' "$log.txt" \
   && grep -q '^numa2: guest bench status 0$' "$log.txt"; then
  echo "numa2: PASS"
else
  echo "numa2: FAIL (console log: $log.txt)" >&2
  tail -30 "$log.txt" >&2
  exit 1
fi
