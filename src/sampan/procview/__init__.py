"""A container-aware /proc: ``meminfo``, ``cpuinfo``, ``stat``, ``uptime``, ``loadavg``, ``diskstats`` and
``swaps`` computed for the cgroup of the process that reads them, served by a FUSE filesystem and bind-mounted
over the container's own /proc files (what LXCFS does, which Docker does not set up).

``view`` renders the files from cgroup figures (v1 and v2) and the host's /proc; ``fs`` is the FUSE filesystem;
``server`` runs it, one per run-time root, for every container that asks for the view.
"""
