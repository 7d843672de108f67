"""Uplink research code: the trace-driven simulator, the exact MILP optimum, workloads, traces, `vigil bench uplink`.

Nothing here runs in the service; only the emulated link of `python -m services.uplink` loads a trace
from :mod:`services.uplink.sim.traces`. :mod:`services.uplink.sim.optimal` needs scipy (the `sim` extra).
"""
