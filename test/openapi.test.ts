import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker } from './support/broker.js';

describe('OpenAPI document', () => {
  let mock: MockServer;
  let broker: TestBroker;

  beforeAll(async () => {
    mock = await startMock();
    broker = await startBroker(configFor({ p: mock }), { workers: undefined });
  });
  afterAll(async () => {
    await broker.close();
    await mock.app.close();
    await dropPrefix(broker.prefix);
  });

  it('is generated from the zod schemas and served at /docs', async () => {
    const res = await fetch(`${broker.url}/docs/json`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { openapi: string; paths: Record<string, Record<string, any>> };
    expect(doc.openapi).toMatch(/^3\./);
    for (const path of ['/v1/jobs', '/v1/jobs/{id}', '/v1/jobs/bulk', '/v1/jobs/{id}/cancel', '/v1/batches', '/v1/providers']) {
      expect(Object.keys(doc.paths), path).toContain(path);
    }
    // The job body's constraints come straight from the zod schema.
    const body = doc.paths['/v1/jobs']!.post.requestBody.content['application/json'].schema;
    expect(body.required).toContain('request');
    expect(body.properties.priority).toMatchObject({ minimum: 1, maximum: 10, default: 5 });
    expect(body.additionalProperties).toBe(false);
    // Answers are documented too: 202 with the job, errors in the one error shape.
    const responses = doc.paths['/v1/jobs']!.post.responses;
    const accepted = responses['202'].content['application/json'].schema;
    expect(accepted.properties.status.enum).toEqual(['queued', 'running', 'succeeded', 'failed', 'cancelled', 'expired']);
    expect(accepted.required).toEqual(expect.arrayContaining(['id', 'object', 'status', 'attempts', 'result']));
    for (const status of ['400', '401', '402', '413', '422', '429', '503']) {
      const error = responses[status].content['application/json'].schema;
      expect(error.properties.error.required, status).toEqual(['type', 'message', 'param', 'code']);
    }
    expect(doc.paths['/v1/jobs/{id}']!.get.responses['404'].content['application/json'].schema.properties.error).toBeDefined();
    // The upload is multipart, with its two fields.
    const upload = doc.paths['/v1/files']!.post.requestBody.content['multipart/form-data'].schema;
    expect(Object.keys(upload.properties).sort()).toEqual(['file', 'purpose']);
    expect(upload.properties.file.format).toBe('binary');
    const ui = await fetch(`${broker.url}/docs`);
    expect(ui.status).toBe(200);
  });
});
