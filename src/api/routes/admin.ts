import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import type { FastifyPluginAsync } from 'fastify';
import { deliveryView } from '../board/delivery-view.js';
import { ProviderQueueAdapter } from '../board/provider-queue-adapter.js';
import { protectOperatorRoutes } from '../operator-auth.js';
import { providerViews } from './providers.js';

/**
 * Bull Board at /admin/queues: every provider queue and the broker's own queues (webhooks, deadlines,
 * batches), grouped by their name prefix, read-only unless `auth.admin.queue_actions` allows retries
 * and removals; and GET /admin/providers, the providers with every tenant's totals.
 */
export const adminRoutes: FastifyPluginAsync = async (app) => {
  const { config, queues, webhooks, deadlines, batchSteps, store } = app.services;
  await protectOperatorRoutes(app, config.auth);
  const actions = config.auth.admin?.queue_actions ?? false;
  const options = (description: string) => ({ readOnlyMode: !actions, allowRetries: actions, description, delimiter: '-' });
  const adapter = (queue: ConstructorParameters<typeof BullMQAdapter>[0], description: string) => new BullMQAdapter(queue, options(description));
  const deliveries = adapter(webhooks.queue, 'webhook deliveries: the event body and the receiver URL past its origin are not shown');
  deliveries.setFormatter('data', deliveryView);
  const serverAdapter = new FastifyAdapter();
  serverAdapter.setBasePath('/admin/queues');
  createBullBoard({
    queues: [
      ...queues.all().map(([name]) => new ProviderQueueAdapter(name, queues, store, config, options(`hops for provider ${name}: each named task → target, data from its job's record (GET /v1/jobs/<id>)`))),
      deliveries,
      adapter(deadlines.bullQueue, 'job deadlines'),
      adapter(batchSteps.queue, 'batch steps'),
    ],
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Switchyard queues' } },
  });
  await app.register(serverAdapter.registerPlugin(), { prefix: '/queues' });
  // The operators' view of the providers: /v1/providers plus every tenant's totals.
  app.get('/providers', async () => ({ object: 'list', data: await providerViews(app.services, { totals: true }) }));
};
