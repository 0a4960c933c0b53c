--[[
  BullMQ's moveToActive (the installed version's own script), then the claim of the hop it
  fetched, in the same step: the worker gets the hop and its claim in one round trip rather than
  two. Same keys and arguments as BullMQ's; see claimFetched for what is added to its answer.
]]
--- @bullmq "moveToActive"
--- @include "claimFetched"

return claimFetched(moveToActive(KEYS, ARGV), ARGV[1], ARGV[2])
