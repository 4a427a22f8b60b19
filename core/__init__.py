"""The shared core: what the worker, the builder and the client all use.

It imports none of them (an import-linter contract in pyproject.toml keeps it so), and needs
only pydantic and the standard library, so the worker image carries it beside `handler`:

    core.errors     the core's typed errors
    core.prices     the GPU and API price table (core/data/prices.json)
    core.money      money arithmetic: worker seconds to dollars, micro-dollars
    core.manifest   a model folder's manifest.json: its schema and its reader
    core.contract   the job contract: input models, limits, the one job-shape parser
    core.tables     plain-text tables and JSON for every CLI
    core.cli        one way for every CLI to report a typed error
"""
