import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import type { ProviderQueues } from '../../queues/provider-queues.js';

type AdapterOptions = ConstructorParameters<typeof BullMQAdapter>[1];

/**
 * Bull Board's view of one provider queue, told what Switchyard knows that BullMQ's own getters
 * do not: a provider with no rpm still runs BullMQ's limiter (a never-binding max, so that 429
 * pauses bite), whose counting key BullMQ's plain TTL read would show as "rate limited 59s".
 */
export class ProviderQueueAdapter extends BullMQAdapter {
  constructor(
    private readonly provider: string,
    private readonly queues: ProviderQueues,
    options: AdapterOptions,
  ) {
    super(queues.get(provider), options);
  }

  /** Only a real pause: a 429's Retry-After, a spent token budget, or a full rpm window. */
  override async getActiveRateLimitTtl(): Promise<number> {
    return this.queues.pausedForMs(this.provider);
  }
}
