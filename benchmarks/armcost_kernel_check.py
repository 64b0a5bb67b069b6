"""arm_cost guest: what the Engine's kernel check adds to loading a model, in instructions on the emulated Pi cores.

    ../shared/tools/arm_cost/measure.sh --script benchmarks/armcost_kernel_check.py --repo . --no-network \
        --cpus a53,a72,a76 --args 'MODEL' ...

MODEL is a path inside the checkout (mounted at /mnt/repo) with its manifest beside it. Each unit is
one Engine load with the check (the self-test and probe frames through XNNPACK and the built-in
kernels); markers 4-5 frame one load without it, so check = unit - (4..5).
"""

from __future__ import annotations

import sys
from pathlib import Path

import armcost_guest as guest  # /opt/armcost on the guest's PYTHONPATH

from edge.model.engine import Engine


def main(model: Path) -> None:
    for _ in range(2):  # warm-up: imports, the runtime's first interpreter
        Engine(model, 1, self_test=False)
    guest.mark(1)
    guest.mark(2)
    engine = Engine(model, 1, self_test=False)
    guest.mark(3)
    guest.mark(4)
    Engine(model, 1, self_test=False, check_kernels=False)
    guest.mark(5)
    check = engine.kernel_check
    guest.report(1, unit="load with check", model=model.name, check=check.describe() if check else None)


if __name__ == "__main__":
    main(Path("/mnt/repo") / sys.argv[1])
