"""What a scan will cost, from what earlier scans measured (``scan_shards.seconds``): never a guess.

A part's cost grows with its layer's neurons, so each measured part gives seconds per neuron for its
(part, layer kind); a planned part is estimated from the same (part, kind), else from the part over every kind,
else not at all, and says so.
"""

from __future__ import annotations


def rates(measured: list[dict]) -> dict:
    """``{(what, kind): seconds per neuron, (what, None): ...}`` from ``Catalog.scan_shards()`` rows."""
    sums: dict = {}
    for row in measured:
        channels = max(int(row.get("channels") or 1), 1)
        for group in ((row["what"], row.get("layer_kind")), (row["what"], None)):
            seconds, neurons = sums.get(group, (0.0, 0))
            sums[group] = (seconds + float(row["seconds"]), neurons + channels)
    return {group: seconds / neurons for group, (seconds, neurons) in sums.items()}


def estimate(shards, measured: list[dict], workers: int = 0) -> dict:
    """The shard time of the parts still to run: ``{"seconds": total or None, "unmeasured": [parts with no
    measurement], "wall_seconds": seconds / workers}``: a lower bound with ``workers`` (scheduling and writing not
    counted), the shard time itself for a scheduler's cluster, whose size the plan does not know (divide by its
    workers). Rates are per neuron, whatever the arguments: pictures measured at 8 steps predict 512 steps at 8."""
    per = rates(measured)
    total, unmeasured = 0.0, set()
    for shard in shards:
        for part in shard.parts:
            rate = per.get((part.what, shard.kind), per.get((part.what, None)))
            if rate is None:
                unmeasured.add(part.what)
            else:
                total += rate * shard.channels
    seconds = None if unmeasured and not total else round(total, 3)
    wall = None if seconds is None else round(seconds / max(workers, 1), 3)
    return {"seconds": seconds, "wall_seconds": wall, "unmeasured": sorted(unmeasured), "measured_parts": len(measured)}
