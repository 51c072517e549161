#!/usr/bin/env bash
# Build the two offline images (no container registry) from the Debian mirror apt already uses,
# with mmdebstrap + `podman import` (design.md §5):
#   localhost/soundsright-base:latest     what models build FROM: minimal bookworm with python3 +
#                                         numpy/scipy/soundfile/fastapi/uvicorn/multipart;
#   localhost/soundsright-builder:latest  buildah + runc: every model build runs inside a
#                                         throwaway container of it (docs/sandbox.md, "Builds").
# Idempotent: an existing image is kept unless FORCE=1. Needs podman + mmdebstrap
# (scripts/podman.sh installs both). The two images are built in parallel.
set -euo pipefail

IMAGE="${SOUNDSRIGHT_BASE_IMAGE:-localhost/soundsright-base:latest}"
BUILDER="${SOUNDSRIGHT_BUILDER_IMAGE:-localhost/soundsright-builder:latest}"
SUITE="${SOUNDSRIGHT_BASE_SUITE:-bookworm}"
PACKAGES="python3,python3-numpy,python3-scipy,python3-soundfile,python3-fastapi,python3-uvicorn"
PACKAGES+=",python3-multipart,ca-certificates"
BUILDER_PACKAGES="buildah,runc,ca-certificates"
DIR="${SOUNDSRIGHT_PODMAN_DIR:-/tmp/soundsright-podman-$(id -u)}"
say() { printf 'base-image.sh: %s\n' "$*" >&2; }

[[ -f "$DIR/containers.conf" && -z "${CONTAINERS_CONF:-}" ]] && export CONTAINERS_CONF="$DIR/containers.conf"

tmp="$(mktemp -d /tmp/soundsright-base.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
# The mirror list comes from the host's apt sources (the only network we have is the mirror).
mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
mirror="${SOUNDSRIGHT_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"

# build NAME PACKAGES [--change ...]: mmdebstrap + import, unless NAME exists (FORCE=1 rebuilds)
build() {
    local name="$1" packages="$2" tar
    shift 2
    if [[ "${FORCE:-0}" != 1 ]] && podman image exists "$name"; then
        say "$name exists (FORCE=1 rebuilds it)"
        return 0
    fi
    tar="$tmp/$(echo "$name" | tr '/:' '__').tar"
    say "mmdebstrap $SUITE for $name from $mirror"
    local start=$SECONDS
    mmdebstrap --quiet --variant=minbase --include="$packages" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook='chroot "$1" apt-get clean' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/*' \
        "$SUITE" "$tar" "$mirror"
    say "import as $name"
    podman import --quiet "$@" "$tar" "$name" >/dev/null
    rm -f "$tar"
    say "built $name in $((SECONDS - start)) s"
}

build "$IMAGE" "$PACKAGES" \
    --change 'ENV PYTHONDONTWRITEBYTECODE=1' --change 'ENV PYTHONUNBUFFERED=1' \
    --change 'ENV HOME=/tmp' --change 'WORKDIR /' --change 'CMD ["/usr/bin/python3"]' &
base_pid=$!
build "$BUILDER" "$BUILDER_PACKAGES" \
    --change 'ENV STORAGE_DRIVER=vfs' --change 'ENV BUILDAH_ISOLATION=chroot' \
    --change 'ENV HOME=/root' --change 'WORKDIR /' --change 'CMD ["sleep", "infinity"]' &
builder_pid=$!
rc=0
wait "$base_pid" || rc=$?
wait "$builder_pid" || rc=$?
exit "$rc"
