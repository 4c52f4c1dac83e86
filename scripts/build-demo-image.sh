#!/usr/bin/env bash
# Builds a small OCI image layout from Debian's busybox-static with umoci (no registry, no
# network), cached outside the checkout. Prints the layout path; the image is tag "busybox".
set -euo pipefail
cache="${BOXLITE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/boxlite}"
key=$( { sha256sum /bin/busybox; cat "$0"; } | sha256sum | cut -c1-16)
layout="$cache/demo-image-$key"
if [ -f "$layout/index.json" ]; then
  echo "$layout"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umoci init --layout "$work/layout"
umoci new --image "$work/layout:busybox"
umoci unpack --image "$work/layout:busybox" "$work/bundle" >/dev/null
root="$work/bundle/rootfs"
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/proc" "$root/sys" "$root/dev" "$root/run"
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$root/etc/passwd"
echo 'root:x:0:' > "$root/etc/group"
echo 'boxlite-demo' > "$root/etc/hostname"
umoci repack --image "$work/layout:busybox" "$work/bundle"
umoci config --image "$work/layout:busybox" --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  --config.workingdir /root --config.cmd sh
mkdir -p "$cache"
rm -rf "$layout"
mv "$work/layout" "$layout"
echo "$layout"
