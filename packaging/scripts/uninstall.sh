#!/bin/sh
# Removes @NAME@: stops and disables the service, removes the program and
# the unit. Run as root.
#
#   ./uninstall.sh [--prefix DIR] [--root DIR] [--purge]
#
#   --purge   also remove /etc/meteorzx/@CONFIG@
#
# @DATA_DIR@ is never removed: it may hold events not yet delivered.
# Remove it yourself once `@BIN@` status shows nothing waiting.
set -eu

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

PREFIX=/opt/@NAME@
ROOT=
PURGE=no
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --purge) PURGE=yes; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "uninstall.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -n "$ROOT" ]; then ROOT=$(cd -- "$ROOT" && pwd -P); fi
[ "$(id -u)" = 0 ] || { echo "uninstall.sh: run as root" >&2; exit 1; }

@SERVICE_FUNCTIONS@

unit=@NAME@.service
if systemd_running; then systemctl stop "$unit" 2>/dev/null || true; fi
unit_disable "$unit"
rm -f "${ROOT}/etc/systemd/system/$unit"
if systemd_running; then systemctl daemon-reload; fi
if [ "$(readlink "${ROOT}/usr/local/bin/@BIN@" 2>/dev/null || true)" = "$PREFIX/bin/@BIN@" ]; then
  rm -f "${ROOT}/usr/local/bin/@BIN@"
fi
rm -rf "${ROOT}${PREFIX}"
if [ "$PURGE" = yes ]; then
  rm -f "${ROOT}/etc/meteorzx/@CONFIG@" "${ROOT}/etc/meteorzx/@CONFIG@.dist"
  rmdir "${ROOT}/etc/meteorzx" 2>/dev/null || true
fi
echo "removed @NAME@; kept ${ROOT}@DATA_DIR@ and the user $SERVICE_USER"
