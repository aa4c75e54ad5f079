"""Scans: catalogue every neuron of many models, one shard (a layer of a model) at a time, in this process or
on a Dask cluster (``circuits scan``; docs/scan.md).

- ``plan.py``: the shards, the parts each runs (circuits, motifs, labels, pictures) and the keys that say a
  part is done.
- ``shard.py``: ``run_shard``, the pure function a worker runs: a task of plain JSON in, JSON text out.
- ``record.py``: the one writer: a shard's rows and its ``scan_shards`` rows in one transaction.
- ``estimate.py``: what the parts left will cost, from measured times.
- ``cluster.py``: the ``distributed.Client`` (Dask is imported there only).
- ``run.py``: ``scan``, the driver (``circuits.scan``).

The package is ``scanning`` and not ``scan``: ``circuits.scan`` is the function (CONTRIBUTING: a module never
shares its name with the function it holds).
"""
