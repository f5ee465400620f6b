#!/bin/sh
# Start the clinic's Mosquitto in its container from deploy/mosquitto/vitalgate.conf as shipped, with
# two changes a container needs: the log goes to standard output (the container's log), and the
# clinic listener (8884) listens on the compose network instead of loopback, so the clinic's
# containers reach it; it still admits only client certificates from the clinic's CA.
set -eu
conf=/etc/mosquitto/mosquitto.conf
sed -e 's|^log_dest file .*|log_dest stdout|' \
    -e 's|^listener 8884 127.0.0.1$|listener 8884|' \
    /usr/share/vitalgate-broker/vitalgate.conf > "$conf"
# The plugin's state starts as the shipped accounts and roles; the broker rewrites it on every
# account change, so it lives on the broker's volume and is copied only the first time.
if [ ! -f /var/lib/mosquitto/dynamic-security.json ]; then
    install -o mosquitto -g mosquitto -m 600 /usr/share/vitalgate-broker/dynamic-security.json /var/lib/mosquitto/
fi
chown mosquitto:mosquitto /var/lib/mosquitto
exec mosquitto -c "$conf"
