"""A local RunPod serverless platform: real worker processes, scaled from zero, billed per second.

`python -m devtools.platform` serves it (see `cli`); tests use the library API:

    from devtools.platform import EndpointConfig, Platform

    async with Platform() as platform:
        ep = platform.add_endpoint("ep1", EndpointConfig(worker_command=[sys.executable, "-m", "handler"]))
        # runpod.Endpoint("ep1") with RUNPOD_ENDPOINT_BASE_URL=f"{platform.url}/v2"
        await ep.wait_idle(timeout=60)
        ep.ledger(); ep.billed_seconds(include_initializing=False); ep.bill_usd()

Each worker is an OS process of the endpoint's command, started with the
environment a deployed RunPod worker gets, so the runpod SDK runs its own
deployed worker loop (job-take / job-take-batch, job-done, job-stream,
job-stop, ping) against this server. Modules, one concern each:

    config         EndpointConfig, Limits (RunPod's documented numbers)
    jobs           the job record, its policy, the queue
    board          the job protocol: take (long-poll), done, stream, stop, re-queue, timers
    process        one worker OS process: its environment, spawn, SIGTERM/SIGKILL, log
    pool           an endpoint's workers: container-start delay, stop, drain, exit
    scaler         QUEUE_DELAY / REQUEST_COUNT decisions, idle timeout
    ledger         the bill: per-worker states over time, totals at a GPU price
    endpoint       one live endpoint: control loop, health, the library API
    routes_client  /run /runsync /status /stream /cancel /retry /purge-queue /health, rate limits
    routes_openai  RunPod's OpenAI route /openai/v1/...: a job per request, plain or relayed as events
    routes_worker  the SDK's webhooks (documents what the SDK does with them)
    management     REST v2 /v2/serverless and GraphQL saveEndpoint
    routes_admin   /_platform/...: ledger, timeline, workers, logs, jobs, faults
    server         Platform: the aiohttp app, auth, endpoints' start and stop
    report         the bill as a table or JSON
    cli            python -m devtools.platform
    echo_worker    a trivial SDK worker for tests and the benchmark

Times are `time.monotonic()` of the platform process (ledger records also
carry the wall-clock start). Documented RunPod behaviour is followed: the
defaults (idle timeout 5 s, execution timeout 600 s, ttl 24 h), the job
policy bounds (executionTimeout >= 5 s, ttl 10 s..7 days), result retention
(30 min after /run, 1 min after /runsync), `?wait` (default 90 s, clamped to
1..300 s), rate limits (/run 1000, /runsync 2000, /status+/stream 2000,
/cancel 100, /purge-queue 2 per 10 s; 400 open /runsync; queue over 50 and
over 500 per max worker), TIMED_OUT stopping the worker, ttl deleting a job
in any state (/status answers 404), /retry for FAILED and TIMED_OUT only,
lowPriority jobs not triggering scaling.

Where RunPod documents nothing, the conservative reading is taken and said here:
- Scaling from zero starts a worker as soon as a normal job is queued; QUEUE_DELAY
  then adds one worker per job waiting past `scalerValue` s, less the workers
  already starting (`scaler`).
- A worker that dies mid-job has its jobs re-queued at the front, at most
  `max_job_retries` (3) times per job, then the job is FAILED with the reason.
- A worker that exits before it ever asked for a job is retried with back-off
  (1..30 s) and reported `unhealthy` meanwhile.
- Billing: from the platform's decision to start a worker (the container-start
  delay is billed) until its process has exited, including the SIGTERM grace;
  both readings of the Initializing state are reported; seconds are exact, with
  per-worker round-up to whole seconds available.
- The SIGTERM-to-SIGKILL grace is Docker's default, 10 s (`stop_grace`).
- /health counts a stopping worker nowhere (it is still billed until it exits);
  `ready` = idle + running; `failed` counts FAILED and TIMED_OUT.
- Rate limits are kept per endpoint (RunPod's are per endpoint and key).
- A job taken by a worker stays that worker's until its result, a cancel, a
  timeout, ttl expiry or the worker's exit; cancel and timeout reach the worker
  through the SDK's job-stop channel. The SDK drops a stop that arrives before
  the job's task exists, so a stopped job lingers on its worker (which counts
  as running, not idle) until a heartbeat or a job-take with job_in_progress=0
  shows it gone, and each heartbeat still listing it repeats the stop.
- The job-take long-poll is held 10 s before 204, the job-stop poll 10 s.
- The "no capacity" fault (`Endpoint.set_no_capacity`, POST /_platform/{ep}/fault)
  keeps jobs queued and counts the workers the scaler wants as `throttled`; they
  are not billed (RunPod's workers page marks Throttled unbilled).
- Webhooks (`webhook` in a job request) are accepted and not called.
"""

from devtools.platform.config import ConfigError, EndpointConfig, Limits
from devtools.platform.endpoint import Endpoint
from devtools.platform.ledger import LedgerEntry
from devtools.platform.server import Platform

__all__ = ["ConfigError", "Endpoint", "EndpointConfig", "LedgerEntry", "Limits", "Platform"]
