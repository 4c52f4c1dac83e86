# Sourced by scripts/setup.sh and scripts/build-images.sh.

# The URI of the apt source that serves Debian bookworm's main suite on this machine
# (deb822 .sources files or one-line sources.list entries), empty if there is none.
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
      { uri = ""; ok = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
          if ($i ~ /^Suites:/ && $i ~ /[ \t]bookworm([ \t]|$)/) ok = 1
        }
        if (ok && uri != "") { print uri; exit } }' "$f"
  done | head -n1 | grep . && return
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
    awk '$1 == "deb" && $0 !~ /\[/ && $3 == "bookworm" { print $2; exit }
         $1 == "deb" && $2 ~ /^\[/ { for (i = 2; i <= NF; i++) if ($i ~ /\]$/) break;
           if ($(i + 2) == "bookworm") { print $(i + 1); exit } }'
}
