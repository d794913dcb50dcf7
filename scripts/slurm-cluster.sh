#!/usr/bin/env bash
# A local Slurm cluster for weir's tests, from Debian's packages: slurmctld
# and two slurmd on this host (nodes n1 and n2, on loopback; n2 advertises
# one GPU through gres.conf, backed by a fake device file), munge for
# authentication. Two partitions: main (both nodes, the default) and
# second (n1 only), so tests can check that a step's partition is honoured.
# The configuration goes to Slurm's default place (/etc/slurm), so plain
# `sinfo`, `squeue`, `sbatch` and `scancel` reach it. No systemd: the
# daemons are started directly. Needs root.
# Usage: scripts/slurm-cluster.sh up|down|status
set -euo pipefail

conf=/etc/slurm
state=/var/lib/weir-slurm
gpu=$state/fake-gpu/nvidia0

up() {
    if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
        if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
            apt-get install -y slurmd slurmctld slurm-client munge >/dev/null 2>&1 \
                || (apt-get update >/dev/null && apt-get install -y slurmd slurmctld slurm-client munge >/dev/null)
        else
            echo "Slurm is not installed: apt-get install slurmd slurmctld slurm-client munge (as root)" >&2
            exit 1
        fi
    fi
    mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge "$state/ctld" "$state/n1" "$state/n2" "$(dirname "$gpu")" /var/log/slurm "$conf"
    touch "$gpu"
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    fi
    chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
    chmod 700 /etc/munge && chmod 400 /etc/munge/munge.key
    chown -R slurm:slurm "$state/ctld" /var/log/slurm
    cat >"$conf/slurm.conf" <<CONF
# Written by weir's scripts/slurm-cluster.sh: a test cluster on loopback.
ClusterName=weirtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=6817
AuthType=auth/munge
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/%n
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd-%n.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
ReturnToService=2
MpiDefault=none
GresTypes=gpu
MaxArraySize=1001
MinJobAge=300
SlurmdTimeout=30
NodeName=n1 NodeHostname=localhost NodeAddr=127.0.0.1 Port=17001 CPUs=2 RealMemory=4000 State=UNKNOWN
NodeName=n2 NodeHostname=localhost NodeAddr=127.0.0.1 Port=17002 CPUs=2 RealMemory=4000 Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
PartitionName=second Nodes=n1 MaxTime=INFINITE State=UP
CONF
    echo "NodeName=n2 Name=gpu File=$gpu" >"$conf/gres.conf"
    rm -f "$conf/cgroup.conf"
    pgrep -x munged >/dev/null || runuser -u munge -- munged
    pgrep -x slurmctld >/dev/null || slurmctld
    for node in n1 n2; do
        pgrep -f "slurmd -N $node" >/dev/null || slurmd -N "$node"
    done
    for _ in $(seq 100); do
        if [ "$(sinfo --noheader --states=idle,mixed,allocated --format=%D 2>/dev/null | paste -sd+ | bc 2>/dev/null || echo 0)" = 2 ]; then
            status
            return 0
        fi
        sleep 0.2
    done
    echo "the cluster did not come up; see /var/log/slurm" >&2
    sinfo >&2 || true
    exit 1
}

down() {
    for node in n1 n2; do pkill -f "slurmd -N $node" 2>/dev/null || true; done
    pkill -x slurmctld 2>/dev/null || true
    echo "slurm cluster stopped (munged left running)"
}

status() {
    sinfo --format="%P %a %D %t %N %G"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
