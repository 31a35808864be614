"""The host under the data plane: its topology from sysfs/procfs (topology), placement (plan), readiness checks
(check), DPDK ports through the project's own bindings (ports, run in a child by ports_child)."""
