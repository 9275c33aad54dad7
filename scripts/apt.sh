# Sourced by the scripts that install a missing Debian package.
#
# apt_install PACKAGE...: installs the packages from Debian's repositories,
# as root or through sudo; returns non-zero when it cannot (no root and no
# sudo, or apt failed), leaving the caller to say what is missing.
apt_install() {
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  else return 1; fi
}
