-- wrk script for bench/scale.sh: every request names a tenant drawn uniformly from the snapshot,
-- `Host: t<k>.localhost` with k uniform in [0, N), so lookups (and limiter state) spread over the
-- whole snapshot rather than hitting one hot entry. The per-request cost is one math.random and
-- one string concatenation, the same for every N (the N=1 run uses this script too, so the Lua
-- cost on the load core is the same in every measurement). Reports through wrk-report.lua's `done`.
--
--   wrk -t1 -c64 -d10s --latency -s bench/wrk-tenants.lua http://127.0.0.1:18181/ -- N [SEED]

local n = 1

init = function(args)
  n = tonumber(args[1]) or 1
  -- A different sequence per run (wrk's LuaJIT starts from a fixed seed), unless SEED is given.
  math.randomseed(tonumber(args[2]) or (os.time() + math.floor(os.clock() * 1e6)))
end

request = function()
  return "GET / HTTP/1.1\r\nHost: t" .. math.random(0, n - 1) .. ".localhost\r\n\r\n"
end

-- The `done` hook (WRK_JSON line) comes from wrk-report.lua beside this file.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "wrk-report.lua")
