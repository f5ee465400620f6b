#!/bin/sh
# Runs as root inside the QEMU guest that tests/bluez/vm.py boots with virtme-ng.
#   guest.sh WORK REPO PYTHON [--only a,b]
# WORK is the shared folder (results come back through it), REPO the project, PYTHON the venv's.
set -u
WORK=$1
REPO=$2
PYTHON=$3
shift 3
exec >"$WORK/guest.log" 2>&1
echo "guest: kernel $(uname -r), $(nproc) CPUs"
# The kernel's virtual HCI driver: /dev/vhci, where the virtual radio plays the controller.
modprobe hci_vhci || { echo "modprobe hci_vhci failed"; exit 1; }
mkdir -p /run/dbus /var/lib/bluetooth
dbus-daemon --system --fork --nopidfile || { echo "dbus-daemon failed"; exit 1; }
cd "$REPO" || exit 1
# The HCI and mgmt traffic as btmon captures it, kept for when a scenario fails.
mkdir -p "$WORK/logs"
btmon -w "$WORK/logs/hci.btsnoop" >/dev/null 2>&1 &
# The HCI traffic as the virtual radio sees it on /dev/vhci (bumble's snooper, written as the
# runner closes the radio), for `bumble-show --format snoop`: Debian 12's `btmon -r` crashes at the
# first ATT exchange of either capture.
export BUMBLE_SNOOPER="btsnoop:file:$WORK/logs/vhci.btsnoop"
# The runner starts bluetoothd itself (a scenario restarts it).
PYTHONDONTWRITEBYTECODE=1 "$PYTHON" -m tests.bluez.guest_runner --work "$WORK" "$@"
echo "$?" >"$WORK/runner.rc"
