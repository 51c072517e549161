#!/usr/bin/env bash
# Build localhost/soundsright-base:latest offline (no container registry): mmdebstrap a minimal
# Debian bookworm with python3 + numpy/scipy/soundfile/fastapi/uvicorn/multipart from the Debian
# mirror apt already uses, then `podman import` it (design.md §5). Idempotent: an existing image
# is kept unless FORCE=1. Needs podman + mmdebstrap (scripts/podman.sh installs both).
set -euo pipefail

IMAGE="${SOUNDSRIGHT_BASE_IMAGE:-localhost/soundsright-base:latest}"
SUITE="${SOUNDSRIGHT_BASE_SUITE:-bookworm}"
PACKAGES="python3,python3-numpy,python3-scipy,python3-soundfile,python3-fastapi,python3-uvicorn"
PACKAGES+=",python3-multipart,ca-certificates"
DIR="${SOUNDSRIGHT_PODMAN_DIR:-/tmp/soundsright-podman-$(id -u)}"
say() { printf 'base-image.sh: %s\n' "$*" >&2; }

[[ -f "$DIR/containers.conf" && -z "${CONTAINERS_CONF:-}" ]] && export CONTAINERS_CONF="$DIR/containers.conf"

if [[ "${FORCE:-0}" != 1 ]] && podman image exists "$IMAGE"; then
    say "$IMAGE exists (FORCE=1 rebuilds it)"
    exit 0
fi

tmp="$(mktemp -d /tmp/soundsright-base.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
# The mirror list comes from the host's apt sources (the only network we have is the mirror).
mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
mirror="${SOUNDSRIGHT_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"
say "mmdebstrap $SUITE from $mirror"
start=$SECONDS
mmdebstrap --quiet --variant=minbase --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='chroot "$1" apt-get clean' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/*' \
    "$SUITE" "$tmp/base.tar" "$mirror"
say "import as $IMAGE"
podman import --quiet \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'ENV HOME=/tmp' --change 'WORKDIR /' --change 'CMD ["/usr/bin/python3"]' \
    "$tmp/base.tar" "$IMAGE" >/dev/null
say "built $IMAGE in $((SECONDS - start)) s"
