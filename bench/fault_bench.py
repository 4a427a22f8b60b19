"""The fault run at full size: 1,000 jobs, 3 workers, every fault (devtools.faults).

python -m bench fault
"""

from __future__ import annotations

import asyncio
from typing import Any

from devtools.faults import fault_run


def run() -> list[dict[str, Any]]:
    report = asyncio.run(fault_run(1000, workers=3, seed=0))
    print(report.to_dict())
    gap = abs(report.budget_spent_s - report.billed_s)
    return [
        {"metric": "faults: jobs final with an answer or a typed error", "value": sum(report.statuses.values())
         - len(report.not_final) - len(report.untyped), "goal": "1000", "unit": "jobs"},
        {"metric": "faults: malformed jobs refused as validation_error", "value": report.malformed
         - len(report.malformed_accepted), "goal": str(report.malformed), "unit": "jobs"},
        {"metric": "faults: tracebacks reaching a caller; errors cached; workers crashed",
         "value": f"{len(report.tracebacks)}; {len(report.cached_errors)}; {len(report.crashed)}",
         "goal": "0; 0; 0", "unit": "count"},
        {"metric": "faults: |budget spent - ledger bill| / bound", "value": round(gap / report.bound_s, 3),
         "goal": "<= 1", "unit": "ratio"},
    ]  # fmt: skip
