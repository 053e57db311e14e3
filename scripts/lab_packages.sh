#!/usr/bin/env bash
# Debian packages the simulated device lab needs: a real OpenSSH server and client, rsync, and
# iproute2 (a device in its own network namespace whose link a test can cut), busybox and mksh
# (the shells of phones and small boards, for the POSIX sh sampler), Debian's adb (client and server; the
# phone is tests/lab/adbd.py, a stand-in adbd on loopback), and chromium (the HTML
# report is tested in a real headless browser; Playwright drives it, it never downloads one).
# Installs only what is missing (root, or sudo where available).
set -euo pipefail
need=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need+=(iproute2)  # network namespaces: cut a link
command -v busybox >/dev/null 2>&1 || need+=(busybox)  # the phone's sh sampler under busybox sh
command -v mksh >/dev/null 2>&1 || need+=(mksh)  # ... and under mksh, Android's shell
command -v toybox >/dev/null 2>&1 || need+=(toybox)  # Android's tools beside mksh (tests/test_spawning.py)
command -v adb >/dev/null 2>&1 || need+=(adb)  # the real adb client and server, against tests/lab/adbd.py
command -v unshare >/dev/null 2>&1 || need+=(util-linux)  # the stand-in phone's private mount namespace
[ -f /usr/share/i18n/locales/de_DE ] || need+=(locales)  # a comma-decimal locale (localedef) for llama.cpp's output
[ -x /usr/bin/chromium ] || need+=(chromium)  # the report, opened in a real headless browser
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing ${need[*]} for the device lab" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
