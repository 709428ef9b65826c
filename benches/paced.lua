-- wrk script: the geo mix (../shared/bench/geo-mix.lua: a rotating
-- X-Forwarded-For from 40 countries) at a fixed offered load instead of as
-- fast as the target answers. After each answer a connection pauses a
-- random 0 to 2 * CONNS / RATE ms (CONNS / RATE s on average), so every
-- target is offered about the same RATE requests/s, less its own latency,
-- which is small below saturation. At saturation a proxy's p99 is its
-- queue, and so its throughput (Little's law); paced, targets are compared
-- at one load they all carry.
--
--   RATE=10000 CONNS=64 WRK_SCRIPT=$PWD/benches/paced.lua benches/peer.sh
--   RATE=10000 WRK_SCRIPT=$PWD/benches/paced.lua SHAPES=keepalive benches/peer-tls.sh
--
-- RATE and CONNS (the wrk -c of the run) come from the environment; GEO
-- names the mix to pace (default: the shared geo-mix.lua beside this repo).
-- wrk waits in whole milliseconds; the run reports the rate it achieved.
-- So RATE/1000 requests arrive on each millisecond tick together: at
-- 10,000/s a burst of about ten, whose CPU the latency still includes.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local mix = os.getenv("GEO") or (here .. "../../shared/bench/geo-mix.lua")
dofile(mix)

local rate = tonumber(os.getenv("RATE") or "")
local conns = tonumber(os.getenv("CONNS") or "")
if not rate or not conns or rate <= 0 or conns <= 0 then
  error("paced.lua: set RATE (requests/s, above 0) and CONNS (wrk -c) in the environment")
end
local pause_ms = conns * 1000 / rate

-- Uniform between 0 and twice the mean, drawn per request: with one fixed
-- pause every connection would fire on the same millisecond tick, and a
-- burst of CONNS requests at once measures how long a target takes to
-- drain it (its CPU per request again), not what it adds to one request.
math.randomseed(30)
delay = function()
  return math.random(0, math.floor(2 * pause_ms + 0.5))
end
