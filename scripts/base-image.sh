#!/usr/bin/env bash
# Build the two offline images (no container registry) from the Debian mirror apt already uses,
# with mmdebstrap + `podman import` (design.md §5):
#   localhost/soundsright-base:latest     what models build FROM: minimal bookworm with python3 +
#                                         numpy/scipy/soundfile/fastapi/uvicorn/multipart;
#   localhost/soundsright-builder:latest  buildah + runc: every model build runs inside a
#                                         throwaway container of it (docs/sandbox.md, "Builds");
#                                         it carries the base image pre-extracted as a read-only
#                                         overlay image store in /var/lib/shared, so a build's
#                                         FROM needs no import (labels soundsright.builder.*).
# Idempotent: an existing image is kept unless FORCE=1; the builder is also rebuilt when its
# version label is not BUILDER_VERSION or the base image it holds is not the current base image.
# Needs podman + mmdebstrap (scripts/podman.sh installs both). The two rootfs are made in
# parallel.
set -euo pipefail

IMAGE="${SOUNDSRIGHT_BASE_IMAGE:-localhost/soundsright-base:latest}"
BUILDER="${SOUNDSRIGHT_BUILDER_IMAGE:-localhost/soundsright-builder:latest}"
SUITE="${SOUNDSRIGHT_BASE_SUITE:-bookworm}"
PACKAGES="python3,python3-numpy,python3-scipy,python3-soundfile,python3-fastapi,python3-uvicorn"
PACKAGES+=",python3-multipart,ca-certificates"
BUILDER_PACKAGES="buildah,runc,ca-certificates"
# Bump when the builder's content or layout changes (docs/sandbox.md): CI's `make base-image`
# then rebuilds a builder it already has.
BUILDER_VERSION=2
DIR="${SOUNDSRIGHT_PODMAN_DIR:-/tmp/soundsright-podman-$(id -u)}"
say() { printf 'base-image.sh: %s\n' "$*" >&2; }

[[ -f "$DIR/containers.conf" && -z "${CONTAINERS_CONF:-}" ]] && export CONTAINERS_CONF="$DIR/containers.conf"

tmp="$(mktemp -d /tmp/soundsright-base.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
# The mirror list comes from the host's apt sources (the only network we have is the mirror).
mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
mirror="${SOUNDSRIGHT_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}"

# rootfs NAME PACKAGES TAR: mmdebstrap a minimal bookworm with PACKAGES into TAR
rootfs() {
    local name="$1" packages="$2" tar="$3"
    say "mmdebstrap $SUITE for $name from $mirror"
    mmdebstrap --quiet --variant=minbase --include="$packages" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --customize-hook='chroot "$1" apt-get clean' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/*' \
        "$SUITE" "$tar" "$mirror"
}

exists() { [[ "${FORCE:-0}" != 1 ]] && podman image exists "$1"; }
label() { podman image inspect --format "{{index .Labels \"$2\"}}" "$1" 2>/dev/null; }

# 1. the two rootfs in parallel (the builder's only if it is missing or of another version)
base_tar="$tmp/base.tar"
builder_tar="$tmp/builder.tar"
base_pid=""
builder_pid=""
if exists "$IMAGE"; then
    say "$IMAGE exists (FORCE=1 rebuilds it)"
else
    rootfs "$IMAGE" "$PACKAGES" "$base_tar" &
    base_pid=$!
fi
if ! exists "$BUILDER" || [[ "$(label "$BUILDER" soundsright.builder.version)" != "$BUILDER_VERSION" ]]; then
    rootfs "$BUILDER" "$BUILDER_PACKAGES" "$builder_tar" &
    builder_pid=$!
fi
rc=0
if [[ -n "$base_pid" ]]; then
    wait "$base_pid" || rc=$?
    if ((rc == 0)); then
        say "import as $IMAGE"
        podman import --quiet \
            --change 'ENV PYTHONDONTWRITEBYTECODE=1' --change 'ENV PYTHONUNBUFFERED=1' \
            --change 'ENV HOME=/tmp' --change 'WORKDIR /' --change 'CMD ["/usr/bin/python3"]' \
            "$base_tar" "$IMAGE" >/dev/null
        rm -f "$base_tar"
    fi
fi
if [[ -n "$builder_pid" ]]; then wait "$builder_pid" || rc=$?; fi
((rc == 0)) || exit "$rc"

# 2. the builder: its rootfs plus the base image as a read-only overlay store in /var/lib/shared
base_id="$(podman image inspect --format '{{.Id}}' "$IMAGE")"
if [[ -z "$builder_pid" && "$(label "$BUILDER" soundsright.builder.bases)" == "$base_id" ]]; then
    say "$BUILDER exists with $IMAGE in its store (FORCE=1 rebuilds it)"
    exit 0
fi
if [[ -z "$builder_pid" ]]; then  # same version, but the base image changed
    rootfs "$BUILDER" "$BUILDER_PACKAGES" "$builder_tar"
fi
start=$SECONDS
say "extracting $IMAGE into the builder's image store"
podman save --quiet --format docker-archive -o "$tmp/base-image.tar" "$IMAGE"
store="$tmp/store"
# A separate, throwaway storage root on the host (this is the trusted setup: the archive is the
# image just built); only its overlay layout goes into the builder.
side() { podman --root "$store/root" --runroot "$store/run" --storage-driver overlay "$@" \
    2>"$tmp/side.err" || { cat "$tmp/side.err" >&2; return 1; }; }
side load --quiet -i "$tmp/base-image.tar" >/dev/null
side tag "$base_id" "$IMAGE"
rm -f "$tmp/base-image.tar"
rm -rf "$store/root/libpod" "$store/root/defaultNetworkBackend" "$store/root/networks" \
    "$store/root/volumes" "$store/root/overlay-containers" "$store/root/tmp"
# pax (long names, xattrs), concatenated to mmdebstrap's ustar archive
tar -C "$store/root" --format=pax --numeric-owner --xattrs --xattrs-include='*' \
    --transform 's,^\.,./var/lib/shared,S' -cf "$tmp/store.tar" .
tar -Af "$builder_tar" "$tmp/store.tar"
rm -f "$tmp/store.tar"
rm -rf "$store"
say "import as $BUILDER"
podman import --quiet \
    --change 'ENV STORAGE_DRIVER=vfs' --change 'ENV BUILDAH_ISOLATION=chroot' \
    --change 'ENV HOME=/root' --change 'WORKDIR /' --change 'CMD ["sleep", "infinity"]' \
    --change "LABEL soundsright.builder.version=$BUILDER_VERSION" \
    --change "LABEL soundsright.builder.bases=$base_id" \
    "$builder_tar" "$BUILDER" >/dev/null
rm -f "$builder_tar"
say "built $BUILDER in $((SECONDS - start)) s (plus its rootfs)"
