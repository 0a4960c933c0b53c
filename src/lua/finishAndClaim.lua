--[[
  BullMQ's moveToFinished (the installed version's own script), then the claim of the next hop
  it fetched, if it fetched one, in the same step. Same keys and arguments as BullMQ's; see
  claimFetched for what is added to its answer.
  A hop's settle may ride along (FinishRiders): ARGV[10..12] its keys, ARGV[13..] its arguments,
  as settleAttempt takes them. It goes first, so the job is settled even when BullMQ's step then
  refuses (a lock lost meanwhile), and the answer is then {settle's reply, BullMQ's}. A hop whose
  settle did not apply completes with what the processor says of such a hop (describeUnsettled).
]]
--- @bullmq "moveToFinished"
--- @include "claimFetched"
--- @script "settleAttempt"

if ARGV[10] then
  -- Copied in one C call rather than a Lua loop appending with `#`: about 1% of a job's Redis work.
  local args = {unpack(ARGV, 13)}
  local settled = settleAttempt({ARGV[10], ARGV[11], ARGV[12]}, args)
  if settled == 0 then
    ARGV[4] = '"stale: the job had moved on to a later hop"'
  elseif settled == 3 then
    ARGV[4] = '"discarded: the job had already ended (cancelled or expired)"'
  end
  return {settled, claimFetched(moveToFinished(KEYS, ARGV), ARGV[7], ARGV[2])}
end
return claimFetched(moveToFinished(KEYS, ARGV), ARGV[7], ARGV[2])
