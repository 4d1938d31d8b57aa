#!/bin/sh
# Installs @NAME@ @VERSION@ from this unpacked tarball. Run as root.
#
#   ./install.sh [--prefix DIR] [--root DIR] [--no-start]
#
#   --prefix DIR  where the program goes (default /opt/@NAME@)
#   --root DIR    install into another root file system (an image being
#                 built): lays out files, user and unit; starts nothing
#   --no-start    do not start or restart the service
#
# Installing over an earlier version is an upgrade: the program is swapped,
# /etc/meteorzx/@CONFIG@ is kept (the new default goes beside it as
# @CONFIG@.dist) and @DATA_DIR@ is never touched; a running service
# is restarted (it drains on SIGTERM, then resumes from its buffer).
set -eu

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; }

here=$(cd -- "$(dirname -- "$0")" && pwd -P)
PREFIX=/opt/@NAME@
ROOT=
START=yes
while [ $# -gt 0 ]; do
  case $1 in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --no-start) START=no; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "install.sh: unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $PREFIX in /*) ;; *) echo "install.sh: --prefix must be absolute" >&2; exit 2 ;; esac
if [ -n "$ROOT" ]; then ROOT=$(cd -- "$ROOT" && pwd -P); fi
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }

@SERVICE_FUNCTIONS@

unit=@NAME@.service
dest=${ROOT}${PREFIX}
upgrade=no
[ -e "$dest" ] && upgrade=yes

echo "installing @NAME@ @VERSION@ into ${dest}"
# Copy beside, then swap: a failed copy leaves the installed version whole.
rm -rf "$dest.new" "$dest.old"
mkdir -p "$dest.new"
cp -R "$here/bin" "$here/lib" "$here/runtime" "$here/docs" "$here/VERSION" "$dest.new/"
cp "$here/uninstall.sh" "$dest.new/uninstall.sh"
if [ -e "$dest" ]; then mv "$dest" "$dest.old"; fi
mv "$dest.new" "$dest"
rm -rf "$dest.old"

mkdir -p "${ROOT}/usr/local/bin"
ln -sfn "$PREFIX/bin/@BIN@" "${ROOT}/usr/local/bin/@BIN@"

ensure_user
ensure_data_dir @DATA_DIR@

mkdir -p "${ROOT}/etc/meteorzx"
config=${ROOT}/etc/meteorzx/@CONFIG@
if [ -e "$config" ]; then
  if ! cmp -s "$here/etc/@CONFIG@" "$config"; then
    cp "$here/etc/@CONFIG@" "$config.dist"
    echo "kept $config; the new default is in $config.dist"
  fi
else
  cp "$here/etc/@CONFIG@" "$config"
  secure_config "$config"
fi

# The unit names the install prefix; a non-default one is written into it.
mkdir -p "${ROOT}/etc/systemd/system"
sed "s|/opt/@NAME@|$PREFIX|g" "$here/systemd/$unit" > "${ROOT}/etc/systemd/system/$unit"
chmod 0644 "${ROOT}/etc/systemd/system/$unit"
unit_enable "$unit"

if [ "$START" = yes ] && systemd_running; then
  systemctl daemon-reload
  if [ "$upgrade" = yes ]; then systemctl try-restart "$unit"; else systemctl start "$unit"; fi
  echo "service $unit: $(systemctl is-active "$unit" || true)"
else
  echo "service $unit installed and enabled, not started"
fi
