-- wrk script: POST one JSON body, optionally stop after a number of
-- responses, and print the summary as one JSON line for bench.py.
--
-- wrk itself always runs for its -d: a thread that reached its share of
-- BENCH_LIMIT says WRKDONE on stderr and stops, and bench.py interrupts wrk
-- (SIGINT, after which wrk prints its summary) once every thread did.
--
-- Environment:
--   BENCH_BODY   the request body (JSON)
--   BENCH_LIMIT  total responses after which the threads stop (0: run for -d)
--   BENCH_THREADS  wrk's -t, to split BENCH_LIMIT between threads

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or '{"image": "registry.example.com/acme/web:v1.0.0"}'
wrk.headers["Content-Type"] = "application/json"

local limit = tonumber(os.getenv("BENCH_LIMIT") or "0")
local threads = tonumber(os.getenv("BENCH_THREADS") or "1")

if limit > 0 then
   local per_thread = math.ceil(limit / threads)
   local seen = 0
   -- Only defined when a limit is set: wrk parses responses more cheaply
   -- without a response() hook.
   function response(status, headers, body)
      seen = seen + 1
      if seen == per_thread then
         io.stderr:write("WRKDONE\n")
         io.stderr:flush()
         wrk.thread:stop()
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, '
         .. '"write_errors": %d, "status_errors": %d, "timeouts": %d, '
         .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
