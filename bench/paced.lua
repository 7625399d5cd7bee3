-- wrk script for bench/route.py: every connection waits a fixed time after
-- each response before its next request, so that the load stays well below
-- what the machine can serve and the latency measured is that of the path
-- (proxy hops included), not of a queue. wrk's latency excludes the wait.
--
--   wrk -t2 -c16 -d5s --latency -s bench/paced.lua http://… -- 16
--   (16 ms between requests per connection: about 1,000 requests/s)

local pause = 10

function init(args)
    pause = tonumber(args[1]) or pause
end

function delay()
    return pause
end
