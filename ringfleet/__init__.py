"""ringfleet: one typed cluster spec to a reproducible Horovod cluster, and jobs on it.

Where each concern lives, in the order a cluster is made and used
(docs/architecture.md draws the same flow):

    cli             the `ringfleet` commands; each is a thin call into the layers below
    spec            `Pulumi.<env>.yaml`: the typed cluster spec and its one-line input errors
    compat          software profiles: which TensorFlow, Horovod, Open MPI, MKL go together
    providers/      where nodes come from, one implementation per provider behind one interface:
                    docker/ (local containers: container.py defines a node, cluster.py
                    brings the cluster up, images.py and baseimage.py bake node images),
                    the Pulumi stack operations, and the stack outputs every provider exports
    converge/       outputs -> Ansible inventory -> site.yml on the nodes (ansible.py runs it;
                    nodefiles.py says which role files reach a node; siteroles.py reads site.yml)
    nodes/          the Node protocol the controller reaches a node through (docker.py: exec)
    jobs/           job files (spec.py), launch renders (render.py: the launch script and
                    hostfile), `ringfleet run` (run.py) and the per-rank wrapper (rankexec.py)
    checks/         `verify` (testinfra suite in suite/, drift), `lock`, the performance gate
    preview/        the pull-request report: two revisions recorded by their own code, compared
    state           what ringfleet keeps in .ringfleet/<env>/ (outputs, keys, fingerprints)
    envlock         one `up`/`down`/`lock` at a time per env
    errors          the one-line error every command prints (exit 2 for bad input)
    pydantic_errors pydantic's validation errors turned into that one line
    safetext        refusing control characters in spec and job strings
    files           atomic, private writes
    yamlio          YAML reading with file and line in its errors

The Pulumi program itself is `stacks/` beside this package (run by `pulumi up`).
"""

__version__ = "0.1.0"
