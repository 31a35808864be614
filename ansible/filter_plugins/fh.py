"""Filters for the fh roles. CPU lists: the kernel's list format ("0-3,8,10-11") to CPUs, to a canonical list,
and to the comma-separated 32-bit hex masks that /sys (workqueue, RPS, IRQ affinity) takes; hugepage
reservations to kernel parameters."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError


def fh_cpus(text) -> list[int]:
    """'0-3,8' -> [0, 1, 2, 3, 8]; a list of integers is taken as it is."""
    if isinstance(text, (list, tuple)):
        cpus = {int(c) for c in text}
    else:
        cpus = set()
        for part in str(text).replace(" ", "").split(","):
            if not part:
                continue
            lo, _, hi = part.partition("-")
            try:
                a, b = int(lo), int(hi or lo)
            except ValueError:
                raise AnsibleFilterError(f"fh_cpus: {text!r}: {part!r} is not a CPU or a range A-B; "
                                         "write a list such as \"2-15,18\"") from None
            if a < 0 or b < a or b > 8191:
                raise AnsibleFilterError(f"fh_cpus: {text!r}: {part!r} is not a valid range (0 <= A <= B <= 8191)")
            cpus.update(range(a, b + 1))
    return sorted(cpus)


def fh_cpulist(text) -> str:
    """The canonical kernel list: [0, 1, 2, 5] -> '0-2,5'."""
    cpus, out, i = fh_cpus(text), [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ",".join(out)


def fh_cpumask(text) -> str:
    """The mask /sys takes: 32-bit hex words separated by commas, most significant first ('0-1' -> '3',
    '0,33' -> '2,00000001')."""
    mask = 0
    for c in fh_cpus(text):
        mask |= 1 << c
    words = []
    while True:
        words.append(mask & 0xFFFFFFFF)
        mask >>= 32
        if not mask:
            break
    return ",".join([f"{words[-1]:x}"] + [f"{w:08x}" for w in reversed(words[:-1])])


def fh_hugepage_args(hugepages, default_size="1G") -> list[str]:
    """Kernel parameters for boot-time hugepages: [{size: 1G, per_node: {0: 4, 1: 4}}, {size: 2M, count: 512}] ->
    default_hugepagesz=1G hugepagesz=1G hugepages=0:4,1:4 hugepagesz=2M hugepages=512 (the node format needs
    Linux 5.14 or later)."""
    if not hugepages:
        return []
    out = [f"default_hugepagesz={default_size}"]
    for h in hugepages:
        size = h.get("size")
        if size not in ("1G", "2M"):
            raise AnsibleFilterError(f"fh_hugepage_args: {h!r}: size must be 1G or 2M")
        if h.get("per_node"):
            n = ",".join(f"{int(node)}:{int(count)}" for node, count in sorted(h["per_node"].items(),
                                                                             key=lambda kv: int(kv[0])))
        elif h.get("count") is not None:
            n = str(int(h["count"]))
        else:
            raise AnsibleFilterError(f"fh_hugepage_args: {h!r}: give count (pages in all) or per_node ({{NODE: pages}})")
        out += [f"hugepagesz={size}", f"hugepages={n}"]
    return out


class FilterModule:
    def filters(self):
        return {"fh_cpus": fh_cpus, "fh_cpulist": fh_cpulist, "fh_cpumask": fh_cpumask,
                "fh_hugepage_args": fh_hugepage_args}
