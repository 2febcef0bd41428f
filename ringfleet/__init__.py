"""ringfleet: one typed cluster spec to a reproducible Horovod cluster, and jobs on it.

Where each concern lives, in the order a cluster is made and used
(docs/architecture.md draws the same flow):

    cli             the `ringfleet` commands; each is a thin call into the layers below
    spec/           `Pulumi.<env>.yaml`: the typed model, resolved pools and nodes, the checks
                    every provider shares (each provider checks its own fields)
    paths           every on-disk location once: inventories/<env>/, .ringfleet/<env>/, node paths
    compat          software profiles: which TensorFlow, Horovod, Open MPI, MKL go together
    providers/      where nodes come from: the Provider interface and for_spec(), the one place
                    that reads spec.cluster.provider; docker/ (local containers: container.py
                    defines a node, cluster.py brings the cluster up, images.py and baseimage.py
                    bake node images), aws/ (EC2; hostkeys.py: host keys checked against
                    console output), static.py, sshreach.py (SshNodes of static and aws);
                    stackops.py (Pulumi stack operations)
                    and outputs.py (the stack outputs every provider exports)
    images/         the node image catalog: `images list` (catalog.py), the record each image
                    carries of what is in it (record.py, written at bake), `images export` and
                    `import` for sites without a registry (archive.py); cli.py registers them
    converge/       outputs -> Ansible inventory -> site.yml on the nodes, written once in
                    apply.py (ansible.py runs Ansible; nodefiles.py says which role files reach
                    a node; siteroles.py reads site.yml)
    nodes/          the Node protocol the controller reaches a node through (docker.py: exec)
    jobs/           job files (spec.py), launch renders (render.py: the launch script and
                    hostfile), `ringfleet run` (run.py; attempts.py restarts it after a lost
                    node; elastic.py keeps an elastic run's live host list; horovodenv.py the
                    timeline and autotune switches) and the per-rank wrapper (rankexec.py)
    runs/           seeing a run: the record's schema (record.py), `runs ENV [RUN]` reports and
                    plots, quieter output (quiet.py), `tensorboard`, detached runs (detach.py,
                    supervise.py on the node), `logs` and `cancel` (follow.py); cli.py registers
                    these commands
    slurm/          clusters with `scheduler: slurm`: `run` through sbatch, followed by sacct
                    (submit.py), and `ringfleet queue` (queue.py)
    health/         the gate every placed node passes before ranks start (gate.py), and
                    `ringfleet check` (commands.py)
    checks/         `verify` (testinfra suite in suite/, drift), `lock`, the performance gate
    preview/        the pull-request report: two revisions recorded by their own code, compared
    state           what ringfleet keeps in .ringfleet/<env>/ (outputs, keys, fingerprints)
    envlock         one `up`/`down`/`lock` at a time per env
    errors          the one-line error every command prints (exit 2 bad input, 3 runtime failure)
    pydantic_errors pydantic's validation errors turned into that one line
    safetext        refusing control characters in spec and job strings
    files           atomic, private writes
    yamlio          YAML reading with file and line in its errors

The Pulumi program itself is `stacks/` beside this package (run by `pulumi up`).
"""

__version__ = "0.1.0"
