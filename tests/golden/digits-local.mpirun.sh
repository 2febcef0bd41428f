#!/usr/bin/env bash
# ringfleet job digits (jobs/digits.yaml) on rf-local (Pulumi.local.yaml).
# Run on rf-local-cpu-1 as rf: 4 rank(s) on 2 node(s).
# Exit status 124: the job ran past its timeout of 1200 s.
# Each rank starts through /shared/jobs/digits/rankexec.py (`ringfleet render ENV JOB --format wrapper`),
# which sizes its thread pools from its node and placement, then execs it.
set -euo pipefail
cd /shared/jobs/digits
export RINGFLEET_THREADS_PER_RANK=1
export KMP_BLOCKTIME=1
exec timeout --kill-after=30s 1200 mpirun -np 4 --hostfile hostfile -bind-to none -map-by slot -mca pml ob1 -mca btl '^openib' -mca btl_tcp_if_include eth0 -mca oob_tcp_if_include eth0 -x RINGFLEET_THREADS_PER_RANK -x KMP_BLOCKTIME --tag-output /opt/ringfleet/venv/bin/python /shared/jobs/digits/rankexec.py /opt/ringfleet/venv/bin/python /shared/jobs/digits/digits.py
