#!/usr/bin/env bash
# Builds the box types' guest images as OCI image layouts from Debian bookworm (debootstrap
# and apt from the mirror this machine already uses), cached outside the checkout by a hash
# of their inputs. Prints each layout's path; the image's tag is its name, and
# <cache>/images/NAME links to the current build (the box types' default image).
#
#   scripts/build-images.sh python     # CodeBox: python3, pip, numpy, pandas, matplotlib, pillow
#   scripts/build-images.sh browser    # BrowserBox: chromium, fonts, socat
#   scripts/build-images.sh desktop    # ComputerBox: Xvfb, a window manager, xdotool, xterm,
#                                      # ImageMagick for screenshots
#
# A second run with the same inputs prints the cached path at once. Needs root (debootstrap)
# or sudo, and debootstrap and umoci (scripts/setup.sh installs both).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
say() { echo "build-images: $*" >&2; }
source "$repo/scripts/lib/debian-mirror.sh"

cache="${BOXLITE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/boxlite}/images"
suite=bookworm
pack_format=2
sudo_cmd=()
if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi

packages_of() {
  case "$1" in
    python) echo "python3 python3-pip python3-numpy python3-pandas python3-matplotlib python3-pil" ;;
    browser) echo "chromium fonts-liberation socat ca-certificates" ;;
    desktop) echo "xvfb x11-utils xdotool xterm matchbox-window-manager imagemagick fonts-dejavu-core" ;;
    *) return 1 ;;
  esac
}

build() {
  local name=$1 packages key layout work started mirror
  if ! packages=$(packages_of "$name"); then
    say "unknown image $name (known: python, browser, desktop)"
    return 2
  fi
  # What the image is made of: the suite, its packages and how it is packed (bump
  # pack_format when the steps below change what ends up in the layout).
  key=$(echo "$suite $packages format=$pack_format" | sha256sum | cut -c1-16)
  layout="$cache/$name-$key"
  if [ -f "$layout/index.json" ]; then
    ln -sfn "$name-$key" "$cache/$name"
    echo "$layout"
    return 0
  fi
  mirror=$(debian_mirror)
  if [ -z "$mirror" ]; then
    say "no apt source for Debian $suite in /etc/apt: cannot build the $name image"
    return 1
  fi
  started=$(date +%s)
  work=$(mktemp -d "${TMPDIR:-/tmp}/boxlite-image-XXXXXX")
  # shellcheck disable=SC2064 # expand now: the trap must remove this build's directory
  trap "${sudo_cmd[*]} rm -rf '$work'" EXIT
  say "$name: debootstrap $suite, then apt-get install ${packages// /, } (a few minutes)"
  # minbase first, then apt in the new root: debootstrap's own --include resolves too little
  # for packages like chromium. /proc is mounted for the packages' scripts, and services are
  # kept from starting (policy-rc.d).
  "${sudo_cmd[@]}" debootstrap --variant=minbase "$suite" "$work/rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2
    say "$name: debootstrap failed (log above)"
    return 1
  }
  printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]}" tee "$work/rootfs/usr/sbin/policy-rc.d" >/dev/null
  "${sudo_cmd[@]}" chmod 755 "$work/rootfs/usr/sbin/policy-rc.d"
  "${sudo_cmd[@]}" mount -t proc proc "$work/rootfs/proc"
  # shellcheck disable=SC2064 # expand now: this build's paths
  trap "${sudo_cmd[*]} umount '$work/rootfs/proc' 2>/dev/null; ${sudo_cmd[*]} rm -rf '$work'; true" EXIT
  if ! "${sudo_cmd[@]}" chroot "$work/rootfs" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends $packages >"$work/apt.log" 2>&1; then
    tail -20 "$work/apt.log" >&2
    say "$name: apt-get install failed (log above)"
    return 1
  fi
  "${sudo_cmd[@]}" umount "$work/rootfs/proc"
  "${sudo_cmd[@]}" rm -f "$work/rootfs/usr/sbin/policy-rc.d"
  # What a box does not need: package caches, docs, and device nodes (the agent mounts
  # devtmpfs).
  "${sudo_cmd[@]}" rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb \
    "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/usr/share/doc" \
    "$work/rootfs/usr/share/man" "$work/rootfs/usr/share/info" "$work/rootfs/dev/"*
  say "$name: packing $(du -sh "$work/rootfs" | cut -f1) as an OCI layer"
  umoci init --layout "$work/layout"
  umoci new --image "$work/layout:$name"
  "${sudo_cmd[@]}" umoci insert --image "$work/layout:$name" "$work/rootfs" /
  umoci config --image "$work/layout:$name" \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.env LANG=C.UTF-8 --config.workingdir /root --config.cmd sh
  "${sudo_cmd[@]}" chown -R "$(id -u):$(id -g)" "$work/layout"
  mkdir -p "$cache"
  rm -rf "$layout"
  mv "$work/layout" "$layout"
  # The box types' default image: oci:$cache/$name:$name (see CodeBox::default_image).
  ln -sfn "$name-$key" "$cache/$name"
  say "$name: $(du -sh "$layout" | cut -f1) in $(($(date +%s) - started)) s at $layout"
  "${sudo_cmd[@]}" rm -rf "$work"
  trap - EXIT
  echo "$layout"
}

if [ $# -eq 0 ]; then
  echo "usage: scripts/build-images.sh python|browser|desktop..." >&2
  exit 2
fi
for name in "$@"; do
  build "$name"
done
