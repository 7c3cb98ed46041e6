"""dasktune on an HPC batch system through dask-jobqueue (SLURM or PBS).

The scheduler runs in this process, on the login node, with the dasktune plugin preloaded;
each batch job runs one Dask worker. Run it from the login node::

    python deploy/jobqueue/hpc.py slurm 8     # or: pbs 8 — submits 8 worker jobs

and point clients (or ``dasktune run --scheduler``) at the address it prints. Adjust the
queue, account, walltime and resources below to your site.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from dask_jobqueue import PBSCluster
from dask_jobqueue import SLURMCluster

#: One worker per job, one trial at a time per core: Optuna trials are whole-process work.
JOB = dict(cores=4, processes=1, memory="16GB", walltime="04:00:00")
SCHEDULER = {"preload": ["dasktune"], "dashboard_address": ":8787"}


def slurm_cluster(**overrides: Any) -> SLURMCluster:
    """A SLURM cluster whose scheduler hosts dasktune's storage and Tuning page."""
    options: dict[str, Any] = dict(
        JOB, queue="normal", account=None, scheduler_options=dict(SCHEDULER)
    )
    options.update(overrides)
    return SLURMCluster(**options)


def pbs_cluster(**overrides: Any) -> PBSCluster:
    """The same on PBS / Torque."""
    options: dict[str, Any] = dict(JOB, queue="workq", scheduler_options=dict(SCHEDULER))
    options.update(overrides)
    return PBSCluster(**options)


if __name__ == "__main__":
    kind, jobs = sys.argv[1], int(sys.argv[2])
    cluster = {"slurm": slurm_cluster, "pbs": pbs_cluster}[kind]()
    cluster.scale(jobs=jobs)
    print(f"Scheduler: {cluster.scheduler_address}  Dashboard: {cluster.dashboard_link}")
    print(cluster.job_script())
    try:
        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        cluster.close()
