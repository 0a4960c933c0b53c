--[[
  BullMQ's moveToFinished (the installed version's own script), then the claim of the next hop
  it fetched, if it fetched one, in the same step. Same keys and arguments as BullMQ's; see
  claimFetched for what is added to its answer.
]]
--- @bullmq "moveToFinished"
--- @include "claimFetched"

return claimFetched(moveToFinished(KEYS, ARGV), ARGV[7], ARGV[2], ARGV[8])
