#!/usr/bin/env bash
# Installs the Debian packages the engine and its tests need. Idempotent: does nothing when all are present.
#   sip-tester  SIPp, a real SIP peer for the integration tests and benches
#   libopus0    libopus for the project's own Opus codec (opuslib loads it)
#   mosquitto   an MQTT broker the MQTT tool tests start on a free loopback port (the
#               package's own service is not used; in containers it is not started)
#   chromium    headless browser for the admin page test (driven by playwright, which
#               downloads no browser of its own)
#   openssl     makes a throwaway CA and certificate for the TLS broker test
#   gcc, python3-dev (when missing) build telephony_bot/native's C extensions at install
#   kamailio    the SIP dispatcher `serve --workers N` (N > 1) puts in front of the workers;
#               serve runs it in the foreground with its own generated cfg (the package's
#               systemd service is not used; in containers it is not started); the
#               registration tests also run it as a PBX-like registrar
#   nftables, iproute2  the registration test behind a real NAT (network namespaces with
#               masquerading; it runs as root and is skipped otherwise)
#   kamailio-tls-modules  its TLS listener, when the engine config has sip.tls
#   flite       offline voices (slt, rms, awb) for the callers of bench/conversation.py
set -euo pipefail
need=()
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
# (no grep -q: it would close the pipe early and pipefail would call ldconfig failed)
ldconfig -p 2>/dev/null | grep 'libopus\.so\.0' >/dev/null || need+=(libopus0)
# /usr/sbin is not on every user's PATH: look there too
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
[ -x /usr/bin/chromium ] || need+=(chromium)
command -v kamailio >/dev/null 2>&1 || [ -x /usr/sbin/kamailio ] || need+=(kamailio)
dpkg -s kamailio-tls-modules >/dev/null 2>&1 || need+=(kamailio-tls-modules)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v flite >/dev/null 2>&1 || need+=(flite)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
# gcc and the Python headers build the project's two small C extensions (telephony_bot/native)
command -v gcc >/dev/null 2>&1 || need+=(gcc libc6-dev)
py="${PYTHON:-python3}"
if ! "$py" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
  need+=(python3-dev)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}"
