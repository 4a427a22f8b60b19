"""Replay a traffic trace on the local platform and compare the bills (`python -m client replay`).

trace        the JSONL format: arrival offset, job input, tags
profiles     seed 004's usage profiles as traces, time-compressed
configs      endpoint + worker set-ups: baseline, frugal, variants
runner       drives one configuration on devtools.platform (I/O)
summary      the bill and the figures of one run, from its ledger and answers (pure)
projection   the same worker model simulated, to project a month at any price (pure)
measure      a replayed run's timings as the projection's worker model (pure)
chart        the PNG: stacked bills and a timeline of workers (matplotlib)
"""
