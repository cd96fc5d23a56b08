#!/usr/bin/env bash
# A simulated on-prem cluster on this machine, driven by the repository's own
# cluster-local.yaml exactly as docs/cluster.md tells users to run it.
#
#   cluster/sim.sh run     # up, the docs' commands, node loss, --resume, ray down, down
#   cluster/sim.sh up      # the hosts only (sshd, shared storage); then your own commands:
#   cluster/sim.sh client CMD...   # run CMD on the simulated laptop (ray up, ray job ...)
#   cluster/sim.sh host NAME CMD...  # run CMD on a simulated host
#   cluster/sim.sh down    # kill every process of the hosts, delete their namespaces
#
# Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), openssh-server, sshfs and rsync,
# and a venv with lrtune installed from this checkout (`pip install -e
# ".[test,cluster]"`): LRTUNE_SIM_VENV, default the checkout's .venv (the
# test, tests/test_cluster_sim.py, passes the venv it runs in). It is the venv
# the laptop runs and every host starts from, overlaid per host. Pip on the
# hosts is offline: the build backend comes from a wheelhouse in LRTUNE_SIM_DIR
# (default /var/tmp/lrtune-sim), downloaded from the package index the first time. Hosts: a laptop `client`
# (10.213.7.2) that runs `ray up`, and `head`, `w1`, `w2` (.10, .11, .12), each
# a network namespace on one bridge (in its own namespace too) with no default
# route, plus mount, UTS and PID namespaces. Nothing is sent to any address
# but these and loopback. Shared storage: sshfs from the head, mounted at
# /mnt/lrtune on every host. Whatever fails, `run` ends with `down`.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
sim=$(realpath -m "${LRTUNE_SIM_DIR:-/var/tmp/lrtune-sim}")
venv=$(realpath -m "${LRTUNE_SIM_VENV:-$repo/.venv}")
net=10.213.7
declare -A ip=([client]=$net.2 [head]=$net.10 [w1]=$net.11 [w2]=$net.12)
hosts=(client head w1 w2)
lan=lrtsim-lan

say() { echo "[sim.sh $((SECONDS))s] $*" >&2; }

pid1() { cat "$sim/hosts/$1/pid1"; }

# Run a command on a simulated host, as root, in its namespaces, from the checkout.
on() {
    local name=$1
    shift
    nsenter -t "$(pid1 "$name")" -n -m -u -p -- env -i HOME=/root USER=root LOGNAME=root TERM=dumb \
        PATH=/root/lrtune-venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        bash -c 'cd "$0" && exec "$@"' "$repo" "$@"
}

# The laptop that runs `ray up`: the checkout's own venv, the docs' token path.
client() {
    nsenter -t "$(pid1 client)" -n -m -u -p -- env -i HOME=/root USER=root LOGNAME=root TERM=dumb \
        PATH="$venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=/root/.lrtune/cluster-auth/auth_token \
        bash -c 'cd "$0" && exec "$@"' "$repo" "$@"
}

base_venv() {
    # The checkout's venv relocated to /root/lrtune-venv: hard links (nothing is
    # copied, and nothing of the checkout's venv is written), scripts rewritten.
    local stamp
    stamp=$(stat -c %Y "$venv/pyvenv.cfg" "$venv/lib/python3"*/site-packages | sha1sum | cut -c1-12)
    [ -f "$sim/base-venv/.stamp-$stamp" ] && return
    say "base venv from $venv (hard links)"
    rm -rf "$sim/base-venv"
    cp -al "$venv" "$sim/base-venv" 2>/dev/null || {
        say "the venv is on another filesystem than $sim: copying it instead"
        rm -rf "$sim/base-venv"
        cp -a "$venv" "$sim/base-venv"
    }
    # sed -i writes new files, so the links to the checkout's scripts break first.
    grep -lIr --null "$venv" "$sim/base-venv/bin" | xargs -0 -r sed -i "s#$venv#/root/lrtune-venv#g"
    rm -f "$sim/base-venv/lib/python3"*/site-packages/__editable__*lrtune* \
        "$sim/base-venv/lib/python3"*/site-packages/lrtune-*.dist-info -r
    touch "$sim/base-venv/.stamp-$stamp"
}

wheelhouse() {
    # What `pip install -e ~/lrtune` needs offline beyond the venv: the build backend.
    ls "$sim/wheelhouse"/setuptools-*.whl >/dev/null 2>&1 && return
    say "wheelhouse: setuptools, wheel (from the package index, once)"
    "$venv/bin/pip" download -q -d "$sim/wheelhouse" "setuptools>=68" wheel || {
        echo "sim.sh: could not download setuptools and wheel into $sim/wheelhouse (the hosts' offline pip" \
            "builds lrtune with them): reach the package index once, or put their wheels there" >&2
        exit 1
    }
}

up() {
    [ "$(id -u)" = 0 ] || { echo "sim.sh: needs root" >&2; exit 1; }
    for tool in sshd sshfs rsync nsenter unshare; do
        command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
            echo "sim.sh: $tool is missing: apt-get install openssh-server sshfs rsync" >&2
            exit 1
        }
    done
    [ -x "$venv/bin/ray" ] || { echo "sim.sh: no venv at $venv: pip install -e '.[test,cluster]'" >&2; exit 1; }
    # Every host mounts its own tmpfs over these: the sim's files must lie elsewhere.
    [[ $sim =~ ^/(tmp|root|dev/shm|mnt)(/|$) ]] && {
        echo "sim.sh: LRTUNE_SIM_DIR=$sim lies under /tmp, /root, /dev/shm or /mnt, which every host replaces" >&2
        exit 1
    }
    if ip netns list | grep -q "^lrtsim-"; then
        echo "sim.sh: a simulation is up already (ip netns list); cluster/sim.sh down first" >&2
        exit 1
    fi
    mkdir -p "$sim"/{etc,keys,hosts,storage}
    rm -rf "$sim/hosts"/* "$sim/storage"/*
    base_venv
    wheelhouse

    [ -f "$sim/keys/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C lrtune-sim -f "$sim/keys/id_ed25519"
    [ -f "$sim/keys/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$sim/keys/ssh_host_ed25519_key"
    {
        echo "127.0.0.1 localhost"
        for h in "${hosts[@]}"; do echo "${ip[$h]} $h"; done
    } >"$sim/etc/hosts"
    printf '[global]\nno-index = true\nfind-links = %s\n' "$sim/wheelhouse" >"$sim/etc/pip.conf"
    cat >"$sim/etc/sshd_config" <<CONF
HostKey $sim/keys/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile none
MaxSessions 100
MaxStartups 100
AcceptEnv LANG
Subsystem sftp internal-sftp
CONF

    say "network: $lan (bridge), one veth per host, $net.0/24, no default route"
    ip netns add "$lan"
    ip -n "$lan" link set lo up
    ip -n "$lan" link add br0 type bridge
    ip -n "$lan" link set br0 up
    for h in "${hosts[@]}"; do
        ip netns add "lrtsim-$h"
        ip -n "$lan" link add "v-$h" type veth peer name eth0 netns "lrtsim-$h"
        ip -n "$lan" link set "v-$h" master br0 up
        ip -n "lrtsim-$h" link set lo up
        ip -n "lrtsim-$h" addr add "${ip[$h]}/24" dev eth0
        ip -n "lrtsim-$h" link set eth0 up
    done
    # The namespaces' inodes: any process of the simulation is in one of them (down checks).
    for ns in "$lan" "${hosts[@]/#/lrtsim-}"; do echo "$ns $(stat -L -c %i "/run/netns/$ns")"; done >"$sim/netns"

    # The Python the venv was made from (pyvenv.cfg's home is its bin/).
    python_home=$(dirname "$(sed -n 's/^home = //p' "$venv/pyvenv.cfg")")
    for h in "${hosts[@]}"; do
        mkdir -p "$sim/hosts/$h"
        role=sshd
        [ "$h" = client ] && role=none
        setsid ip netns exec "lrtsim-$h" unshare --mount --uts --pid --fork --mount-proc --propagation private \
            "$repo/cluster/host-init.sh" "$h" "$sim" "$role" "$repo" "$venv" "ro:$python_home" \
            </dev/null >"$sim/hosts/$h/init.log" 2>&1 &
        echo $! >"$sim/hosts/$h/unshare"
    done
    for h in "${hosts[@]}"; do
        for _ in $(seq 100); do [ -f "$sim/hosts/$h/ready" ] && break; sleep 0.1; done
        [ -f "$sim/hosts/$h/ready" ] || { cat "$sim/hosts/$h/init.log" >&2; exit 1; }
        # PID 1 of the host: the unshare process's child.
        cat "/proc/$(cat "$sim/hosts/$h/unshare")/task/$(cat "$sim/hosts/$h/unshare")/children" |
            awk '{print $1}' >"$sim/hosts/$h/pid1"
    done

    # The laptop: the SSH key and the cluster token where docs/cluster.md puts them.
    on client bash -c "install -D -m 600 $sim/keys/id_ed25519 /root/.ssh/id_ed25519 &&
        install -m 644 $sim/keys/id_ed25519.pub /root/.ssh/id_ed25519.pub &&
        mkdir -p -m 700 /root/.lrtune/cluster-auth &&
        python3 -c 'import secrets; print(secrets.token_hex(32))' > /root/.lrtune/cluster-auth/auth_token &&
        chmod 600 /root/.lrtune/cluster-auth/auth_token"

    # Shared storage (docs/cluster.md, "On your own machines", step 2): sshfs
    # from the head, the same /mnt/lrtune on every host, the head's included.
    for h in head w1 w2; do
        for _ in $(seq 50); do on "$h" bash -c "exec 3<>/dev/tcp/${ip[head]}/22" 2>/dev/null && break; sleep 0.2; done
        on "$h" bash -c "install -m 600 $sim/keys/id_ed25519 /root/.ssh/storage_key && mkdir -p /mnt/lrtune &&
            sshfs -o IdentityFile=/root/.ssh/storage_key,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null \
                -o reconnect,ServerAliveInterval=5,cache=no \
                root@${ip[head]}:$sim/storage /mnt/lrtune"
    done
    say "hosts up: ${hosts[*]} (shared /mnt/lrtune: sshfs from head)"
}

down() {
    # Every process in the namespaces this script made, and the namespaces.
    # Nothing else: never `ray stop` here, other Rays on this machine are not ours.
    local ns pids
    for ns in $(ip netns list | awk '$1 ~ /^lrtsim-/ {print $1}'); do
        pids=$(ip netns pids "$ns" || true)
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
    done
    for h in "${hosts[@]}"; do
        [ -f "$sim/hosts/$h/unshare" ] && kill -KILL "$(cat "$sim/hosts/$h/unshare")" 2>/dev/null || true
    done
    sleep 0.5
    for ns in $(ip netns list | awk '$1 ~ /^lrtsim-/ {print $1}'); do
        pids=$(ip netns pids "$ns" || true)
        [ -n "$pids" ] && { sleep 1; pids=$(ip netns pids "$ns" || true); }
        [ -n "$pids" ] && echo "sim.sh: still running in $ns: $pids" >&2
        ip netns del "$ns"
    done
    # A process outside the named namespaces' lists (one whose namespace was
    # already deleted) still holds the namespace's inode.
    local left=
    if [ -f "$sim/netns" ]; then
        left=$(for p in /proc/[0-9]*; do
            i=$(stat -L -c %i "$p/ns/net" 2>/dev/null) || continue
            awk -v i="$i" '$2 == i {found = 1} END {exit !found}' "$sim/netns" && echo "${p#/proc/}"
        done | tr '\n' ' ')
    fi
    if [ -n "$left" ]; then
        echo "sim.sh: processes of the simulation still running: $left" >&2
        return 1
    fi
    say "down: no lrtsim- namespace and no process of the simulation left"
}

case "${1:-}" in
up) up ;;
down) down ;;
client)
    shift
    client "$@"
    ;;
host)
    shift
    on "$@"
    ;;
run)
    trap 'status=$?; down || status=1; exit $status' EXIT
    up
    "$venv/bin/python" "$repo/cluster/sim_run.py" "$sim" "${@:2}"
    ;;
*)
    sed -n '2,10p' "$0" >&2
    exit 2
    ;;
esac
