"""`python -m builder.awq_runtime SPEC.json REPORT.json` (AWQ venv) or `... selfcheck`.

Exit codes: 0 done (report written), 3 the job refused its input (message on stderr).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path


def main(argv: list[str]) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    if argv[:1] == ["selfcheck"]:
        from builder.awq_runtime.selfcheck import check

        print(json.dumps(check()))
        return 0
    if len(argv) != 2:
        print("usage: python -m builder.awq_runtime SPEC.json REPORT.json | selfcheck", file=sys.stderr)
        return 2
    from builder.awq_runtime.run import RuntimeJobError, run

    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    try:
        report = run(spec)
    except RuntimeJobError as exc:
        print(f"quantize: {exc}", file=sys.stderr)
        return 3
    Path(argv[1]).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
