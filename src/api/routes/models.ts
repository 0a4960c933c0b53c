import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Config } from '../../config/schema.js';
import { apiError } from '../errors.js';
import { describedOnly, errors, responses } from '../schemas.js';

interface ModelObject {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
}

/**
 * Every name the front door's `model` accepts: aliases, tasks (`task:<name>`), and each
 * `provider/model` that an alias or task routes to or a provider lists under `models`.
 */
export function modelList(config: Config, created: number): ModelObject[] {
  const seen = new Map<string, ModelObject>();
  const add = (id: string, owner: string) => {
    if (!seen.has(id)) seen.set(id, { id, object: 'model', created, owned_by: owner });
  };
  for (const alias of Object.keys(config.models)) add(alias, 'switchyard');
  for (const task of Object.keys(config.tasks)) add(`task:${task}`, 'switchyard');
  const ruleTargets = Object.values(config.tasks).flatMap((rules) => rules.flatMap(({ model }) => (typeof model === 'string' ? (Object.hasOwn(config.models, model) ? [] : [model]) : model)));
  const targets = [...Object.values(config.models).flatMap((a) => a.targets.map((t) => t.target)), ...ruleTargets];
  for (const target of targets) add(target, target.slice(0, target.indexOf('/')));
  for (const [provider, settings] of Object.entries(config.providers)) {
    for (const model of Object.keys((settings as { models?: Record<string, unknown> }).models ?? {})) add(`${provider}/${model}`, provider);
  }
  return [...seen.values()];
}

const modelSchema = z.object({ id: z.string(), object: z.literal('model'), created: z.int(), owned_by: z.string() });

/** `GET /v1/models` and `GET /v1/models/:model`, in OpenAI's shapes, so `client.models.list()` works. */
export const modelsRoutes: FastifyPluginAsyncZod = async (app) => {
  const { auth, config } = app.services;
  app.addHook('onRequest', auth.hook);
  // The configuration is what makes these names, and it is fixed while the process runs.
  const created = Math.floor(Date.now() / 1000);
  const models = modelList(config, created);

  app.get('/models', { ...describedOnly, schema: { response: responses({ 200: z.object({ object: z.literal('list'), data: z.array(modelSchema) }), ...errors(401) }) } }, async () => ({ object: 'list' as const, data: models }));

  app.get(
    '/models/*',
    { ...describedOnly, schema: { params: z.object({ '*': z.string().min(1) }), response: responses({ 200: modelSchema, ...errors(401, 404) }) } },
    async (request, reply) => {
      const id = decodeURIComponent(request.params['*']);
      const model = models.find((m) => m.id === id);
      return model ?? reply.code(404).send(apiError('invalid_request_error', `The model '${id}' does not exist`, 'model', 'model_not_found'));
    },
  );
};
