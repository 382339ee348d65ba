#!/bin/bash
# slim-root.sh OUT PACKAGE... : the runtime root filesystem of a service image.
#
# Run in the build stage of a service's Dockerfile, after apt has installed PACKAGE...:
# copies into OUT the files of PACKAGE... and of every shared-library package (lib*,
# zlib1g) they depend on, directly or not, and nothing else: no apt, no dpkg, no perl, no
# docs, man pages, locales, lintian files or iconv modules (gconv: nothing here uses iconv). The final stage is `FROM scratch` +
# `COPY --from=build OUT /`. OUT/var/lib/dpkg/status holds the copied packages' dpkg
# records, so the image still says which Debian packages (and versions) it carries; the
# service tests compare that list with services/<service>/image-manifest.txt.
#
# Also copies /etc/passwd, /etc/group, /etc/nsswitch.conf, /etc/os-release and the
# dynamic linker's configuration from the build stage, then builds OUT's ld.so.cache.
# Paths listed in EXTRA_PATHS (space-separated) are copied whole (e.g. compiled bytecode
# that dpkg does not list).
set -euo pipefail

out=$1
shift
EXCLUDE='^(/usr/share/(doc|doc-base|man|info|locale|lintian|bug|bash-completion|gdb|gcc|menu)|/usr/lib/x86_64-linux-gnu/gconv)(/|$)'

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

declare -A seen=()
queue=("$@")
packages=()
while ((${#queue[@]})); do
  p=${queue[0]}
  queue=("${queue[@]:1}")
  [ -n "${seen[$p]:-}" ] && continue
  seen[$p]=1
  installed "$p" || { echo "slim-root: package $p is not installed" >&2; exit 1; }
  packages+=("$p")
  IFS=',' read -ra deps <<<"$(dpkg-query -W -f='${Pre-Depends},${Depends}' "$p")"
  for dep in "${deps[@]}"; do
    IFS='|' read -ra alternatives <<<"$dep"
    for alt in "${alternatives[@]}"; do
      name=$(sed -E 's/\([^)]*\)//g; s/:any//; s/[[:space:]]//g' <<<"$alt")
      [ -n "$name" ] && installed "$name" || continue
      case $name in lib* | zlib1g) queue+=("$name") ;; esac
      break
    done
  done
done

list=$(mktemp)
# Merged /usr: /bin, /lib, /lib64 and /sbin are symbolic links into /usr; copied first, as links.
for d in /bin /sbin /lib /lib64; do [ -L "$d" ] && echo "$d"; done >"$list"
for p in "${packages[@]}"; do
  dpkg-query -L "$p" | grep '^/' | grep -Ev "$EXCLUDE" || true
done | sort -u >>"$list"
for f in /etc/passwd /etc/group /etc/nsswitch.conf /etc/os-release /usr/lib/os-release /etc/ld.so.conf \
  /etc/ld.so.conf.d ${EXTRA_PATHS:-}; do
  [ -e "$f" ] && echo "$f"
done >>"$list"
mkdir -p "$out"
# Directories from dpkg's lists are copied without their contents (--no-recursion), except
# the extra paths, which are copied whole.
tar -C / --no-recursion -cf - --files-from="$list" | tar -C "$out" --keep-directory-symlink -xf -
for f in ${EXTRA_PATHS:-} /etc/ld.so.conf.d; do
  if [ -d "$f" ]; then tar -C / -cf - "${f#/}" | tar -C "$out" --keep-directory-symlink -xf -; fi
done
rm -f "$list"

mkdir -p "$out/var/lib/dpkg/info" "$out/var/lib/dpkg/updates" "$out/tmp"
chmod 1777 "$out/tmp"
dpkg-query -s "${packages[@]}" >"$out/var/lib/dpkg/status"
touch "$out/var/lib/dpkg/available"
ldconfig -r "$out"
echo "slim-root: ${#packages[@]} packages, $(du -sh "$out" | cut -f1): ${packages[*]}"
