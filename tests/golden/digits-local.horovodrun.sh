#!/usr/bin/env bash
# ringfleet job digits (jobs/digits.yaml) on rf-local (Pulumi.local.yaml).
# Run on rf-local-cpu-1 as rf: 4 rank(s) on 2 node(s).
# Exit status 124: the job ran past its timeout of 1200 s.
set -euo pipefail
cd /shared/jobs/digits
export OMP_NUM_THREADS=1
export KMP_AFFINITY=granularity=fine,compact,1,0
export KMP_BLOCKTIME=1
export TF_NUM_INTRAOP_THREADS=1
export TF_NUM_INTEROP_THREADS=1
# The same launch with plain mpirun, which reads ./hostfile:
#   mpirun -np 4 --hostfile hostfile -bind-to none -map-by slot -mca pml ob1 -mca btl '^openib' -mca btl_tcp_if_include eth0 -mca oob_tcp_if_include eth0 -x OMP_NUM_THREADS -x KMP_AFFINITY -x KMP_BLOCKTIME -x TF_NUM_INTRAOP_THREADS -x TF_NUM_INTEROP_THREADS --tag-output /opt/ringfleet/venv/bin/python /shared/jobs/digits/digits.py
exec timeout --kill-after=30s 1200 /opt/ringfleet/venv/bin/horovodrun -np 4 -H rf-local-cpu-1:2,rf-local-cpu-2:2 --network-interface eth0 --mpi /opt/ringfleet/venv/bin/python /shared/jobs/digits/digits.py
