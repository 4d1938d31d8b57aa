#!/bin/sh
# @BIN@ @VERSION@: runs the Node.js runtime shipped in this package on the
# bundle, so the host needs no Node.js of its own (and one on PATH is ignored).
# Works from any install prefix and through a symlink (/usr/bin/@BIN@).
self=$0
if resolved=$(readlink -f -- "$0" 2>/dev/null) && [ -n "$resolved" ]; then self=$resolved; fi
case $self in
  */*) bindir=${self%/*} ;;
  *) bindir=. ;;
esac
base=$(cd -- "$bindir/.." && pwd -P) || exit 1
# An allocator to preload when the host has it (packaging/lib/products.mjs
# GATEWAY_ALLOCATOR: glibc malloc lets a long-running gateway's RSS creep).
allocator="@ALLOCATOR_PATH@"
if [ -n "$allocator" ] && [ -z "${METEORZX_SYSTEM_MALLOC:-}" ] && [ -r "$allocator" ]; then
  LD_PRELOAD="$allocator${LD_PRELOAD:+:$LD_PRELOAD}"
  export LD_PRELOAD
fi
exec "$base/runtime/node" @NODE_FLAGS@ "$base/lib/@BUNDLE@" "$@"
