#!/usr/bin/env bash
# The first process of one simulated host (cluster/sim.sh starts it inside the
# host's network namespace, in new mount, UTS and PID namespaces).
#
#   host-init.sh NAME SIM_DIR ROLE [KEEP...]
#
# The host gets its own hostname, /tmp, /root, /dev/shm, /mnt and /etc/hosts,
# the shared venv overlaid at /root/lrtune-venv (what `pip install` writes stays
# on this host) and an offline pip (/etc/pip.conf: the sim's wheelhouse only).
# KEEP: paths the host must still see where they are though they lie under one
# of those private folders (the checkout and the venv a fresh clone has in /tmp,
# the Python a pyenv venv was made from under /root); "ro:PATH" binds it back
# read-only. ROLE "sshd": it then runs sshd on its own address; either way it
# stays PID 1 and reaps the orphans that `ray start` leaves behind.
set -euo pipefail
name=$1 sim=$2 role=$3
shift 3

private='^/(tmp|root|dev/shm|mnt)(/|$)'
# Each KEEP under a private folder, bound aside before the tmpfs hides it
# (one inside another KEEP comes back with it).
kept=()
for spec in "$@"; do
    path=${spec#ro:}
    [[ $path =~ $private ]] || continue
    for k in "${kept[@]}"; do [[ $path == "${k#*=}" || $path == "${k#*=}"/* ]] && continue 2; done
    aside="$sim/hosts/$name/keep/${#kept[@]}"
    mkdir -p "$aside"
    mount --bind "$path" "$aside"
    [[ $spec == ro:* ]] && mount -o remount,bind,ro "$aside"
    kept+=("$aside=$path")
done

hostname "$name"
for dir in /tmp /root /dev/shm /mnt; do
    mount -t tmpfs -o mode=0755 "lrtsim-$name" "$dir"
done
chmod 1777 /tmp /dev/shm
for k in "${kept[@]}"; do
    mkdir -p "${k#*=}"
    mount --move "${k%%=*}" "${k#*=}"
done
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
