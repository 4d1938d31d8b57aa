# --- shared by install.sh, uninstall.sh and the .deb's maintainer scripts ---
# ROOT: the root file system being changed; empty for this system. With a
# ROOT (an image being built, `dpkg --root`), files are laid out and the unit
# is enabled, but no user-visible service is started or stopped.
SERVICE_USER=meteorzx
SERVICE_HOME=/var/lib/meteorzx

has_user() { grep -q "^$SERVICE_USER:" "${ROOT}/etc/passwd" 2>/dev/null; }
has_group() { grep -q "^$SERVICE_USER:" "${ROOT}/etc/group" 2>/dev/null; }
uid_of_user() { awk -F: -v u="$SERVICE_USER" '$1 == u { print $3 }' "${ROOT}/etc/passwd"; }
gid_of_user() { awk -F: -v u="$SERVICE_USER" '$1 == u { print $4 }' "${ROOT}/etc/passwd"; }

# A system user without login or home, owning the data directory.
ensure_user() {
  has_user && return 0
  nologin=/usr/sbin/nologin
  [ -x "${ROOT}$nologin" ] || nologin=/bin/false
  group_opt=--user-group
  has_group && group_opt="--gid $SERVICE_USER"
  # --prefix (shadow >= 4.9) edits ROOT/etc/passwd, group and shadow without chroot().
  # shellcheck disable=SC2086
  useradd ${ROOT:+--prefix "$ROOT"} --system $group_opt --home-dir "$SERVICE_HOME" --no-create-home \
    --shell "$nologin" --comment "MeteorZX service" "$SERVICE_USER"
}

# The data directory: owned by the service user, closed to others. systemd's
# StateDirectory= would create it too; doing it here makes it exist for
# `meteorzx-agent` run by hand and in a ROOT with no systemd.
ensure_data_dir() {
  mkdir -p "${ROOT}$1"
  chmod 0755 "${ROOT}${1%/*}"
  chown "$(uid_of_user):$(gid_of_user)" "${ROOT}$1"
  chmod 0750 "${ROOT}$1"
}

# The config is readable by the service user (it may hold secrets), not by others.
secure_config() {
  chown "0:$(gid_of_user)" "$1"
  chmod 0640 "$1"
}

systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

# Enabling only writes symlinks, so it works offline (chroot, ROOT) too.
unit_enable() {
  command -v systemctl >/dev/null 2>&1 || return 0
  systemctl ${ROOT:+--root="$ROOT"} enable "$1" >/dev/null 2>&1 || echo "warning: could not enable $1" >&2
}
unit_disable() {
  command -v systemctl >/dev/null 2>&1 || return 0
  systemctl ${ROOT:+--root="$ROOT"} disable "$1" >/dev/null 2>&1 || true
}
# --- end of shared functions ---
