#!/usr/bin/env bash
# Installs and builds everything boxlite needs on a Debian 12 machine, idempotently:
# apt packages (QEMU, the kernel source and its build tools, busybox for test images),
# the box kernel (cached outside the checkout), the static guest agent and the workspace.
# A second run installs nothing and rebuilds nothing, and takes seconds.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
say() { echo "setup: $*" >&2; }

# Packages from bookworm. QEMU comes from bookworm-backports: the machine image carries
# qemu-utils 10.0 from there, which conflicts with bookworm's qemu-system 7.2.
# libseccomp-dev and libcap-ng-dev are for building virtiofsd (volumes; not packaged here);
# passt is every engine's network; debootstrap builds the box types' images
# (scripts/build-images.sh); valgrind checks the C SDK for leaks (scripts/c-sdk-test.sh);
# containerd, runc and the CNI plugins (a bridge, with iproute2 to remove it) run the
# containerd shim's tests and benchmark (tests/containerd.rs),
# whose CRI client (k8s-cri) is generated with protoc at build time.
apt_packages=(linux-source-6.12 bison flex bc libelf-dev libssl-dev cpio xz-utils make gcc
  binutils e2fsprogs busybox-static umoci docker-registry skopeo libseccomp-dev libcap-ng-dev
  passt debootstrap valgrind containerd runc containernetworking-plugins iproute2
  protobuf-compiler)
backports_packages=(qemu-system-x86)

missing() {
  local pkg
  for pkg in "$@"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
      echo "$pkg"
    fi
  done
}

source "$repo/scripts/lib/debian-mirror.sh"

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi

need=$(missing "${apt_packages[@]}" "${backports_packages[@]}")
if [ -n "$need" ]; then
  say "installing: $(echo $need)"
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # The mirror is whatever this machine already uses for bookworm itself.
    mirror=$(debian_mirror)
    if [ -z "$mirror" ]; then
      say "no apt source for Debian bookworm found in /etc/apt; add bookworm-backports by hand"
      exit 1
    fi
    say "adding bookworm-backports ($mirror) to the apt sources"
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$mirror" |
      "${sudo_cmd[@]}" tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
  fi
  "${sudo_cmd[@]}" apt-get update -qq
  export DEBIAN_FRONTEND=noninteractive
  need_main=$(missing "${apt_packages[@]}")
  if [ -n "$need_main" ]; then
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends $need_main >/dev/null
  fi
  if [ -n "$(missing "${backports_packages[@]}")" ]; then
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends -t bookworm-backports \
      "${backports_packages[@]}" >/dev/null
  fi
else
  say "apt packages present"
fi

# virtiofsd serves volumes to QEMU guests. Debian 12 ships none that works with the
# backports QEMU, so it is built once with cargo (about 2 minutes) into ~/.cargo/bin.
virtiofsd_version=1.14.0
virtiofsd_bin="${CARGO_HOME:-$HOME/.cargo}/bin/virtiofsd"
if [ -x "$virtiofsd_bin" ] && "$virtiofsd_bin" --version 2>/dev/null | grep -q "$virtiofsd_version"; then
  say "virtiofsd $virtiofsd_version present"
else
  say "installing virtiofsd $virtiofsd_version with cargo"
  cargo install --locked --version "$virtiofsd_version" virtiofsd >&2
fi

say "box kernel"
kernel_dir=$(scripts/build-kernel.sh)
say "kernel ready in $kernel_dir"

say "guest agent (static)"
agent=$(scripts/build-guest.sh)
say "agent ready at $agent"

say "workspace"
cargo build --workspace --locked --all-targets >&2
say "done"
