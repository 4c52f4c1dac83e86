#!/usr/bin/env bash
# Builds the box kernel from Debian's linux-source-6.12 and kernel/boxlite.config.
# The result is cached outside the checkout, keyed by a hash of every input (the config
# fragment, this script, the exact source package version), so a second run returns at once.
# Prints the cache directory (holding bzImage, vmlinux, config) as its last line.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
fragment="$repo/kernel/boxlite.config"
source_tar=/usr/src/linux-source-6.12.tar.xz
cache_root="${BOXLITE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/boxlite}/kernel"

if [ ! -f "$source_tar" ]; then
  echo "build-kernel: $source_tar is missing; run scripts/setup.sh (it installs linux-source-6.12)" >&2
  exit 1
fi
source_version=$(dpkg-query -W -f='${Version}' linux-source-6.12)
key=$( { echo "$source_version"; cat "$fragment" "$0"; } | sha256sum | cut -c1-16)
out="$cache_root/$key"

if [ -f "$out/bzImage" ] && [ -f "$out/vmlinux" ]; then
  echo "build-kernel: cached ($source_version, key $key)" >&2
  ln -sfn "$key" "$cache_root/current"
  echo "$out"
  exit 0
fi

work="$cache_root/build-$key"
mkdir -p "$cache_root"
if [ ! -d "$work/src" ]; then
  echo "build-kernel: unpacking linux-source $source_version" >&2
  rm -rf "$work"
  mkdir -p "$work/src"
  tar -xJf "$source_tar" -C "$work/src" --strip-components=1
fi
cd "$work/src"

echo "build-kernel: configuring (tinyconfig + kernel/boxlite.config)" >&2
make -s ARCH=x86_64 tinyconfig >/dev/null
./scripts/kconfig/merge_config.sh -m .config "$fragment" >/dev/null
make -s ARCH=x86_64 olddefconfig >/dev/null

# merge_config only warns when Kconfig drops an option; a dropped option here means a
# kernel that silently lacks a device, so it is an error.
missing=0
while IFS= read -r line; do
  case "$line" in CONFIG_*=*) ;; *) continue ;; esac
  if ! grep -qx "$line" .config; then
    echo "build-kernel: requested $line, but the final config has: $(grep "^${line%%=*}=" .config || echo 'not set')" >&2
    missing=1
  fi
done < "$fragment"
[ "$missing" = 0 ] || { echo "build-kernel: fix kernel/boxlite.config (a dependency is missing)" >&2; exit 1; }

jobs=$(nproc)
echo "build-kernel: compiling with $jobs jobs (a cold build takes 10-30 minutes on 2 cores)" >&2
start=$(date +%s)
make ARCH=x86_64 -j"$jobs" bzImage 2>&1 | while IFS= read -r line; do
  case "$line" in
    *" CC "*|*" AR "*|*" LD "*) count=$((${count:-0} + 1)); [ $((count % 200)) = 0 ] && echo "build-kernel: $count objects built" >&2 ;;
    *warning*|*error*|*Error*) echo "$line" >&2 ;;
  esac
done
[ "${PIPESTATUS[0]}" = 0 ] || { echo "build-kernel: make failed" >&2; exit 1; }
echo "build-kernel: compiled in $(( $(date +%s) - start )) s" >&2

staging="$cache_root/.staging-$key"
rm -rf "$staging"
mkdir -p "$staging"
cp arch/x86/boot/bzImage "$staging/bzImage"
cp vmlinux "$staging/vmlinux"
cp .config "$staging/config"
echo "$source_version" > "$staging/source-version"
rm -rf "$out"
mv "$staging" "$out"
ln -sfn "$key" "$cache_root/current"
cd "$cache_root"
rm -rf "$work"
echo "$out"
