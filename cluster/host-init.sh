#!/usr/bin/env bash
# The first process of one simulated host (cluster/sim.sh starts it inside the
# host's network namespace, in new mount, UTS and PID namespaces).
#
#   host-init.sh NAME SIM_DIR PYTHON_HOME [sshd]
#
# The host gets its own hostname, /tmp, /root, /dev/shm, /mnt and /etc/hosts,
# the shared venv overlaid at /root/lrtune-venv (what `pip install` writes stays
# on this host), the Python installation the venv was made from (PYTHON_HOME,
# bound back read-only when it lies under the private /root, as pyenv's does)
# and an offline pip (/etc/pip.conf: the sim's wheelhouse only).
# With "sshd" it then runs sshd on its own address; either way it stays PID 1
# and reaps the orphans that `ray start` leaves behind.
set -euo pipefail
name=$1 sim=$2 python_home=$3 role=${4:-}

hostname "$name"
keep="$sim/hosts/$name/python"
case "$python_home" in /root/*)
    mkdir -p "$keep"
    mount --bind -o ro "$python_home" "$keep"
esac
for dir in /tmp /root /dev/shm /mnt; do
    mount -t tmpfs -o mode=0755 "lrtsim-$name" "$dir"
done
chmod 1777 /tmp /dev/shm
case "$python_home" in /root/*)
    mkdir -p "$python_home"
    mount --move "$keep" "$python_home"
esac
mount --bind "$sim/etc/hosts" /etc/hosts
mount --bind "$sim/etc/pip.conf" /etc/pip.conf

# The venv every host shares, copy-on-write per host.
mkdir -p "/root/lrtune-venv" "$sim/hosts/$name/upper" "$sim/hosts/$name/work"
mount -t overlay "lrtsim-$name-venv" \
    -o "lowerdir=$sim/base-venv,upperdir=$sim/hosts/$name/upper,workdir=$sim/hosts/$name/work" \
    /root/lrtune-venv

mkdir -m 700 /root/.ssh
install -m 600 "$sim/keys/id_ed25519.pub" /root/.ssh/authorized_keys
mkdir -p /run/sshd

if [ "$role" = sshd ]; then
    /usr/sbin/sshd -D -e -f "$sim/etc/sshd_config" -o "ListenAddress=$(getent hosts "$name" | awk '{print $1}')" \
        >>"$sim/hosts/$name/sshd.log" 2>&1 &
fi
echo ready >"$sim/hosts/$name/ready"
# PID 1: wait for any child, reparented orphans included, until killed.
trap 'exit 0' TERM
while true; do
    wait -n 2>/dev/null || sleep 1
done
