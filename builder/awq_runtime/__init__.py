"""Code that runs INSIDE the AWQ venv (.venv-awq: AutoAWQ 0.2.9, transformers 4.51.3, torch).

`builder.quantize` (worker venv, no torch) starts ``python -m builder.awq_runtime SPEC REPORT``
in that venv. Modules:

    fixed_quantizer   AwqQuantizer subclass: the CPU alias-bug fix, and a record of the scales
    weights           GEMM unpacking/dequantization, round-to-nearest, reconstruction errors
    evaluate          perplexity on a held-out text
    run               the whole job: calibrate, quantize, save, measure; returns the report
    selfcheck         shows the upstream bug and that the fix holds (used by the tests)

Only the standard library, torch, transformers, safetensors and awq are imported here
(and `builder.model_files`, which is standard library only). mypy skips this folder:
its third-party imports have no type information in the worker venv.
"""
