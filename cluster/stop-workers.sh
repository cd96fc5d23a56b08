#!/bin/sh
# Stop Ray on every worker of a `local`-provider cluster; run on the head, before
# `ray down` (which, without Docker, stops Ray on the head only):
#
#   ray exec cluster-local.yaml 'sh ~/lrtune/cluster/stop-workers.sh'
#   ray down cluster-local.yaml
#
# The workers and the SSH login come from the config `ray up` left on the head
# (~/ray_bootstrap_config.yaml, ~/ray_bootstrap_key.pem). `ray stop` runs in a
# login shell after ~/.bashrc there, as Ray runs its own commands, so it is the venv's Ray (cluster-local.yaml's setup commands).
# Fails, naming them, if any worker could not be reached or stopped.
set -eu
config=${1:-$HOME/ray_bootstrap_config.yaml}
key=${2:-$HOME/ray_bootstrap_key.pem}
set -- $(python3 - "$config" <<'PY'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
print(config["auth"]["ssh_user"], *config["provider"].get("worker_ips", []))
PY
)
user=$1
shift
failed=""
for ip in "$@"; do
    if ssh -i "$key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o ConnectTimeout=10 -o LogLevel=ERROR "$user@$ip" "bash --login -c -i 'source ~/.bashrc; ray stop'" </dev/null >/dev/null; then
        echo "stopped Ray on $ip"
    else
        failed="$failed $ip"
    fi
done
[ -z "$failed" ] || { echo "could not stop Ray on:$failed" >&2; exit 1; }
