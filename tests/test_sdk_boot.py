"""The runpod SDK's import-time CPU probe, answered from /proc in the worker process."""

from __future__ import annotations

import subprocess
import sys

from handler.sdk_boot import processor_name
from handler.settings import REPO_ROOT


def test_processor_name_reads_the_first_model_name() -> None:
    text = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n\nmodel name : other\n"
    assert processor_name(text) == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    assert processor_name("processor : 0\nBogoMIPS : 50.00\n") == ""


def test_the_sdk_imports_without_its_subprocess_probe() -> None:
    """With the probe answered in-process the SDK starts no second interpreter (py-cpuinfo's) at import."""
    code = (
        "import subprocess\n"
        "spawned = []\n"
        "real = subprocess.Popen.__init__\n"
        "def spy(self, args, *a, **k):\n"
        "    spawned.append(args)\n"
        "    real(self, args, *a, **k)\n"
        "subprocess.Popen.__init__ = spy\n"
        "from handler.sdk_boot import fast_cpu_probe\n"
        "fast_cpu_probe()\n"
        "import runpod.serverless.utils.rp_debugger as d\n"
        "print(sum('cpuinfo' in ' '.join(map(str, a)) for a in spawned), d.PROCESSOR)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    spawned, name = done.stdout.strip().split(" ", 1)
    assert spawned == "0" and name  # bench/worker_bench.py measures what it saves
