#!/usr/bin/env bash
# Signs a model release's manifest for the model_release role (docs/model-releases.md):
#
#   scripts/model-release-sign.sh [-p PRINCIPAL] KEY RELEASE_DIR
#
# KEY is an SSH private key (ssh-keygen asks for its passphrase), or a public key whose
# private half ssh-agent holds. RELEASE_DIR is <name>-<version>/ with its manifest.json.
# Writes RELEASE_DIR/manifest.json.sig (`ssh-keygen -Y sign -n mlops-model`; an older one is
# replaced), checks it, and prints on stdout the allowed_signers line of the key, for
# model_release_allowed_signers:
#
#   PRINCIPAL namespaces="mlops-model" ssh-ed25519 AAAA...
#
# PRINCIPAL names the signer in that line (default: the key's comment if it is one word,
# else <user>@<host>). Make a key with: ssh-keygen -t ed25519 -C release@example.org -f KEY
set -euo pipefail

NAMESPACE=mlops-model

usage() {
  sed -n '2,16s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

principal=
while getopts 'p:h' opt; do
  case $opt in
    p) principal=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 2 ] || usage
key=$1 release=${2%/}
manifest=$release/manifest.json

die() {
  echo "model-release-sign: $*" >&2
  exit 1
}
command -v ssh-keygen >/dev/null || die "ssh-keygen not found (Debian: apt-get install openssh-client)"
[ -f "$manifest" ] || die "$manifest does not exist: give a release directory <name>-<version>/"
[ -f "$key" ] || die "key $key does not exist"

# The public key: the given .pub, the .pub beside the private key, or derived from it.
if [[ $key == *.pub ]]; then
  public=$(cat "$key")
elif [ -f "$key.pub" ]; then
  public=$(cat "$key.pub")
else
  public=$(ssh-keygen -y -f "$key") || die "cannot read the public key of $key"
fi
read -r kind blob comment <<<"$public"
[ -n "${kind:-}" ] && [ -n "${blob:-}" ] || die "cannot read the public key of $key"
if [ -z "$principal" ]; then
  if [ -n "${comment:-}" ] && [[ $comment != *[[:space:]]* ]]; then
    principal=$comment
  else
    principal="$(id -un)@$(hostname)"
  fi
fi
[[ $principal =~ ^[^[:space:]]+$ ]] || die "principal '$principal' must be one word"
line="$principal namespaces=\"$NAMESPACE\" $kind $blob"

# ssh-keygen asks before it overwrites a signature: replace it. With a .pub key, ssh-agent signs.
rm -f "$manifest.sig"
ssh-keygen -q -Y sign -n "$NAMESPACE" -f "$key" "$manifest" >&2

# Verify what was written, as the role will.
signers=$(mktemp)
trap 'rm -f "$signers"' EXIT
printf '%s\n' "$line" >"$signers"
ssh-keygen -Y verify -f "$signers" -I "$principal" -n "$NAMESPACE" -s "$manifest.sig" <"$manifest" >/dev/null 2>&1 ||
  die "the signature just written does not verify: $manifest.sig"

echo "model-release-sign: wrote $manifest.sig; add this line to model_release_allowed_signers:" >&2
printf '%s\n' "$line"
