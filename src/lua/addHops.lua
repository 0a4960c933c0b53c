--[[
  Adds many hops to one provider's queue, each exactly as BullMQ's Queue.add would (its own
  addPrioritizedJob, with the arguments BullMQ built for it): what addBulk does, in one script
  rather than a transaction of one script per hop.
  KEYS: BullMQ's keys for addPrioritizedJob on this queue
  ARGV: for each hop, BullMQ's three arguments
  Returns how many hops were added (a hop already there is left as it is, as BullMQ leaves it).
]]
--- @bullmq "addPrioritizedJob"

for i = 1, #ARGV, 3 do
  addPrioritizedJob(KEYS, {ARGV[i], ARGV[i + 1], ARGV[i + 2]})
end
return #ARGV / 3
