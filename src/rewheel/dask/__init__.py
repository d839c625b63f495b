"""Running builds on a Dask cluster.

Set here, before ``distributed`` is first imported (it reads this setting once, at import): no
offloading of message serialization to another thread. The coordinator's messages to and from
the cluster are small (a job, an answer), and measuring each one's size to decide whether to
offload it cost more coordinator CPU per task than serializing it (benchmarks/README.md,
``bench_scaleout.py``). A process that imported ``distributed`` before keeps its own setting.
"""

import dask.config

dask.config.set({"distributed.comm.offload": False})
