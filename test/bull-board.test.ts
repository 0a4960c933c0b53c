import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchBrowser } from './support/browser.js';
import { chat, configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, waitFor } from './support/broker.js';
import { createTestHost, type NetnsReceiver, startReceiver, type TestHost } from './support/netns.js';
import { hopJobId } from '../src/queues/provider-queues.js';

const KEY = 'sy-board-tenant-key-0123456789';
const OPS = { user: 'ops', password: 'correct horse battery' };
const WEBHOOK_SECRET = `whsec_${Buffer.from('board-test-secret-0123456789').toString('base64')}`;
const basic = `Basic ${Buffer.from(`${OPS.user}:${OPS.password}`).toString('base64')}`;
/** In every prompt: none of it may reach Bull Board (nor may the mock's answer, which echoes it). */
const PROMPT = 'PROMPT-TEXT-do-not-show';
/** How the primary answers prompts that contain each `match`. */
const PRIMARY_RULES = [
  { match: 'fall-back', status: 503 },
  { match: 'bad-request', status: 400, message: 'Invalid value for temperature.' },
  { match: 'everywhere-down', status: 503 },
  { match: 'slow-call', latencyMs: 3000 },
];

interface BoardJob {
  id: string;
  finishedOn?: number;
  name: string;
  data: Record<string, unknown>;
  returnValue: unknown;
  failedReason?: string;
  isFailed: boolean;
  externalUrl?: { href: string; displayText: string };
}

/**
 * Bull Board as an operator reads it, through its own HTTP API: each hop job named for what it
 * carries, its outcome where Bull Board shows outcomes (a failed job's hop in the failed tab), its
 * job log, and actions that keep the job record whole.
 */
describe('Bull Board', () => {
  let primary: MockServer;
  let secondary: MockServer;
  let broker: TestBroker;
  /** Every body Bull Board answered with, for the check that no prompt or secret is in any. */
  const seen: string[] = [];

  const board = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(`${broker.url}/admin/queues${path}`, { ...init, headers: { authorization: basic, ...(init.body ? { 'content-type': 'application/json' } : {}) } });
    const text = await res.text();
    seen.push(text);
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
  const hop = async (queue: string, bullId: string) => {
    const { status, body } = await board(`/api/queues/${queue}/${bullId}`);
    expect(status).toBe(200);
    return body as { job: BoardJob; status: string };
  };
  const logs = async (queue: string, bullId: string) => (await board(`/api/queues/${queue}/${bullId}/logs`)).body as string[];
  const behave = (rules: object[]) => fetch(`${primary.url}/_mock/behaviour`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ rules }) });
  const api = (method: string, path: string, body?: unknown) => broker.call(method, path, body, { authorization: `Bearer ${KEY}` });
  const submit = async (content: string, extra: Record<string, unknown> = {}) => (await api('POST', '/v1/jobs', { task: 'summarize', priority: 3, request: chat(`${PROMPT} ${content}`), ...extra })).body.id as string;
  const settled = async (id: string) => (await api('GET', `/v1/jobs/${id}?wait=20`)).body;
  /**
   * The hop's BullMQ job once it has finished. Bull Board reads a job and then its state, so a read
   * racing the finish can pair the active job's fields with its new state: finishedOn tells.
   */
  const finished = (queue: string, bullId: string) => waitFor(async () => {
    const h = await hop(queue, bullId);
    return (h.status === 'completed' || h.status === 'failed') && h.job.finishedOn ? h : undefined;
  });

  beforeAll(async () => {
    primary = await startMock({ rules: [...PRIMARY_RULES, { match: 'retry-me', status: 400, message: 'Temporary refusal.' }] });
    secondary = await startMock({ rules: [{ match: 'everywhere-down', status: 503 }] });
    const config = configFor(
      { primary, secondary },
      {
        auth: { api_keys: [{ name: 'team-a', key: KEY }], admin: { ...OPS, queue_actions: true } },
        models: { chain: ['primary/p-model', 'secondary/s-model'] },
        tasks: { default: 'chain', summarize: 'chain' },
        breaker: { failure_threshold: 1000 },
        webhooks: { secret: WEBHOOK_SECRET },
      },
    );
    broker = await startBroker(config);
  });
  afterAll(async () => {
    await broker?.close();
    await Promise.all([primary?.app.close(), secondary?.app.close()]);
    if (broker) await dropPrefix(broker.prefix);
  });

  it('names a hop for its task and target, describes it from its record, and links the record', async () => {
    const id = await submit('a plain success');
    const job = await settled(id);
    expect(job.status).toBe('succeeded');
    // The record lists the BullMQ job that carried each hop it reached.
    expect(job.hops).toEqual([{ hop: 0, target: 'primary/p-model', queue: 'llm-primary', bull_job_id: `${hopJobId(id, 0)}` }]);
    const { job: shown, status } = await finished('llm-primary', `${hopJobId(id, 0)}`);
    expect(status).toBe('completed');
    expect(shown.name).toBe('summarize → primary/p-model');
    expect(shown.data).toEqual({ id, hop: 0, task: 'summarize', alias: 'chain', target: 'primary/p-model', tenant: 'team-a', priority: 3, job_status: 'succeeded', record: `/v1/jobs/${id}` });
    expect(shown.externalUrl).toEqual({ href: `/v1/jobs/${id}`, displayText: 'job record' });
    expect(shown.returnValue).toMatch(new RegExp(`^succeeded in \\d+ ms: ${job.usage.total_tokens} tokens$`));
    expect(shown.isFailed).toBe(false);
    const lines = await logs('llm-primary', `${hopJobId(id, 0)}`);
    expect(lines).toEqual([
      expect.stringMatching(/^claimed by worker .+:\d+$/),
      'called primary/p-model',
      expect.stringMatching(new RegExp(`^succeeded in \\d+ ms: ${job.usage.total_tokens} tokens$`)),
    ]);
  });

  it('completes a hop that fell back with where it went and why, and the next hop in its own queue', async () => {
    const id = await submit('please fall-back');
    const job = await settled(id);
    expect(job.status).toBe('succeeded');
    expect(job.hops.map((h: { bull_job_id: string; queue: string }) => [h.queue, h.bull_job_id])).toEqual([['llm-primary', `${hopJobId(id, 0)}`], ['llm-secondary', `${hopJobId(id, 1)}`]]);
    const first = await finished('llm-primary', `${hopJobId(id, 0)}`);
    expect(first.status).toBe('completed');
    expect(first.job.returnValue).toBe('fell back to secondary/s-model: provider_unavailable 503');
    expect((await logs('llm-primary', `${hopJobId(id, 0)}`)).slice(1)).toEqual([
      'called primary/p-model',
      expect.stringMatching(/^fallback in \d+ ms: provider_unavailable 503: .*Injected failure \(503\)/),
      'handed to llm-secondary as hop 1 (secondary/s-model)',
    ]);
    const second = await finished('llm-secondary', `${hopJobId(id, 1)}`);
    expect(second.status).toBe('completed');
    expect(second.job.name).toBe('summarize → secondary/s-model (hop 1)');
    expect(second.job.data).toMatchObject({ hop: 1, target: 'secondary/s-model', job_status: 'succeeded' });
    expect(second.job.returnValue).toMatch(/^succeeded in \d+ ms/);
  });

  it("files the hop of a job a provider refused (400) as failed, with the job's error, not retried", async () => {
    const id = await submit('a bad-request here');
    const job = await settled(id);
    expect(job.status).toBe('failed');
    const { job: shown, status } = await finished('llm-primary', `${hopJobId(id, 0)}`);
    expect(status).toBe('failed');
    expect(shown.isFailed).toBe(true);
    expect(shown.failedReason).toBe(`${job.error.type} 400: ${job.error.message}`);
    expect(shown.failedReason).toMatch(/Invalid value for temperature/);
    // Once: BullMQ did not retry it, and the record was not touched again.
    expect((shown as unknown as { attempts: number }).attempts).toBe(1);
    expect((await settled(id)).attempts).toEqual(job.attempts);
    expect((await logs('llm-primary', `${hopJobId(id, 0)}`)).slice(-1)).toEqual(['the job failed']);
    // And the failed tab counts it.
    const { body } = await board('/api/queues?activeQueue=llm-primary&status=failed');
    const queue = (body.queues as { name: string; counts: Record<string, number>; jobs: BoardJob[] }[]).find((q) => q.name === 'llm-primary')!;
    expect(queue.counts.failed).toBeGreaterThanOrEqual(1);
    expect(queue.jobs.map((j) => j.id)).toContain(`${hopJobId(id, 0)}`);
    expect(queue.jobs.find((j) => j.id === `${hopJobId(id, 0)}`)!.name).toBe('summarize → primary/p-model');
  });

  it('files the last hop of a chain that ran out as failed, saying every target failed', async () => {
    const id = await submit('everywhere-down today');
    const job = await settled(id);
    expect(job.status).toBe('failed');
    expect((await finished('llm-primary', `${hopJobId(id, 0)}`)).job.returnValue).toBe('fell back to secondary/s-model: provider_unavailable 503');
    const last = await finished('llm-secondary', `${hopJobId(id, 1)}`);
    expect(last.status).toBe('failed');
    expect(last.job.failedReason).toMatch(/^provider_unavailable 503: all 2 targets failed; last: /);
  });

  it('completes the hop of a cancelled job as cancelled, distinct from a failure', async () => {
    const id = await submit('a slow-call to cancel');
    await waitFor(async () => (await api('GET', `/v1/jobs/${id}`)).body.status === 'running');
    expect((await api('POST', `/v1/jobs/${id}/cancel`)).status).toBe(200);
    const { job: shown, status } = await finished('llm-primary', `${hopJobId(id, 0)}`);
    expect(status).toBe('completed');
    expect(shown.returnValue).toBe('cancelled: the call was stopped when the job was cancelled');
    expect(shown.data).toMatchObject({ job_status: 'cancelled' });
    expect((await logs('llm-primary', `${hopJobId(id, 0)}`)).slice(1)).toEqual(['called primary/p-model', expect.stringMatching(/^stopped after \d+ ms: the job was ended while its call ran$/)]);
  });

  it('files the hop of an expired job as failed, marked expired', async () => {
    const id = await submit('a slow-call past its deadline', { deadline_s: 1 });
    expect((await settled(id)).status).toBe('expired');
    const { job: shown, status } = await finished('llm-primary', `${hopJobId(id, 0)}`);
    expect(status).toBe('failed');
    expect(shown.failedReason).toMatch(/^expired: /);
    expect(shown.data).toMatchObject({ job_status: 'expired' });
  });

  it('retries a failed hop by re-opening its job at that hop, recorded in the ledger, and refuses what it cannot retry', async () => {
    const id = await submit('retry-me please');
    const failed = await settled(id);
    expect(failed.status).toBe('failed');
    await finished('llm-primary', `${hopJobId(id, 0)}`);
    // The provider has since been fixed.
    await behave(PRIMARY_RULES);
    expect((await board(`/api/queues/llm-primary/${hopJobId(id, 0)}/retry`, { method: 'PUT' })).status).toBe(204);
    const job = await waitFor(async () => {
      const j = (await api('GET', `/v1/jobs/${id}?wait=5`)).body;
      return j.status === 'succeeded' ? j : undefined;
    });
    expect(job.attempts.map((a: { outcome: string }) => a.outcome)).toEqual(['failed', 'retried', 'succeeded']);
    expect(job.attempts[1]).toMatchObject({ hop: 0, provider: 'primary', error: { type: 'manual_retry' } });
    expect(job.error).toBeNull();
    const again = await finished('llm-primary', `${hopJobId(id, 0)}`);
    expect(again.status).toBe('completed');
    expect(again.job.returnValue).toMatch(/^succeeded in \d+ ms/);
    expect((await logs('llm-primary', `${hopJobId(id, 0)}`))).toContainEqual(expect.stringMatching(/^re-opened by an operator \(retry 1\)/));

    // A completed hop, and a hop its job has moved past, are refused with the reason.
    const done = await board(`/api/queues/llm-primary/${hopJobId(id, 0)}/retry`, { method: 'PUT' });
    expect(done.status).toBe(409);
    expect(done.body.message).toMatch(/is succeeded, not failed/);
    const exhausted = await submit('everywhere-down again');
    await settled(exhausted);
    await finished('llm-secondary', `${hopJobId(exhausted, 1)}`);
    const early = await board(`/api/queues/llm-primary/${hopJobId(exhausted, 0)}/retry`, { method: 'PUT' });
    expect(early.status).toBe(409);
    expect(early.body.message).toMatch(/failed at hop 1, not at hop 0/);
    expect((await api('GET', `/v1/jobs/${exhausted}`)).body.status).toBe('failed');

    // A failed job past its deadline would only expire on its first claim.
    const hurried = await submit('a bad-request in a hurry', { deadline_s: 1 });
    expect((await settled(hurried)).status).toBe('failed');
    await finished('llm-primary', `${hopJobId(hurried, 0)}`);
    await new Promise((r) => setTimeout(r, 1100));
    const late = await board(`/api/queues/llm-primary/${hopJobId(hurried, 0)}/retry`, { method: 'PUT' });
    expect(late.status).toBe(409);
    expect(late.body.message).toMatch(new RegExp(`^job ${hurried} passed its deadline \\(.+\\): a retry would only expire it`));
    expect((await api('GET', `/v1/jobs/${hurried}`)).body.attempts.map((a: { outcome: string }) => a.outcome)).toEqual(['failed']);
  });

  it("sends a re-opened job's new end to its webhook as a new event, in the default guard's config", async () => {
    // A receiver on a public address (a network namespace): nothing here allows private targets.
    expect(broker.config.webhooks.allow_private_targets).toBe(false);
    const host: TestHost = await createTestHost();
    try {
      const receiver: NetnsReceiver = await startReceiver(host);
      await behave([...PRIMARY_RULES, { match: 'retry-me', status: 400, message: 'Temporary refusal.' }]);
      const id = await submit('retry-me with a webhook', { webhook_url: receiver.url });
      expect((await settled(id)).status).toBe('failed');
      const verify = (body: string, headers: Record<string, string>) => new Webhook(WEBHOOK_SECRET).verify(body, headers) as { id: string; type: string };
      const first = await receiver.waitFor((d) => (JSON.parse(d.body) as { data: { id: string } }).data.id === id);
      expect(verify(first.body, first.headers)).toMatchObject({ id: `evt_${id.slice(4)}`, type: 'job.failed' });
      await finished('llm-primary', `${hopJobId(id, 0)}`);
      await behave(PRIMARY_RULES);
      expect((await board(`/api/queues/llm-primary/${hopJobId(id, 0)}/retry`, { method: 'PUT' })).status).toBe(204);
      const second = await receiver.waitFor((d) => (JSON.parse(d.body) as { type: string; data: { id: string } }).data.id === id && JSON.parse(d.body).type === 'job.succeeded');
      expect(verify(second.body, second.headers)).toMatchObject({ id: `evt_${id.slice(4)}-r1`, type: 'job.succeeded' });
      expect(second.headers['webhook-id']).toBe(`evt_${id.slice(4)}-r1`);
    } finally {
      await host.close();
      await behave(PRIMARY_RULES);
    }
  });

  it('retries all failed hops it may, and answers 409 naming one it may not', async () => {
    const bad = await submit('one more bad-request');
    const late = await submit('a slow-call that will expire', { deadline_s: 1 });
    expect((await settled(bad)).status).toBe('failed');
    expect((await settled(late)).status).toBe('expired');
    await Promise.all([finished('llm-primary', `${hopJobId(bad, 0)}`), finished('llm-primary', `${hopJobId(late, 0)}`)]);
    const res = await board('/api/queues/llm-primary/retry/failed', { method: 'PUT' });
    expect(res.status).toBe(409);
    expect(res.body.message).toBe(`job ${late} expired (its deadline passed): a retry would only expire it again; submit it again`);
    // The one it could retry ran again (and failed again, the provider still refusing it).
    const again = await waitFor(async () => {
      const j = (await api('GET', `/v1/jobs/${bad}?wait=5`)).body;
      return j.status === 'failed' && j.attempts.length === 3 ? j : undefined;
    });
    expect(again.attempts.map((a: { outcome: string }) => a.outcome)).toEqual(['failed', 'retried', 'failed']);
    expect((await api('GET', `/v1/jobs/${late}`)).body.status).toBe('expired');
  });

  it('keeps records whole through remove and clean: removing a waiting hop cancels its job, emptying is refused', async () => {
    // No worker serves this provider: its hops wait.
    const idle = await startMock();
    const config = configFor({ idle }, { auth: { api_keys: [{ name: 'team-a', key: KEY }], admin: { ...OPS, queue_actions: true } } });
    const apiOnly = await startBroker(config, { workers: undefined });
    try {
      const auth = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' };
      const { id } = (await (await fetch(`${apiOnly.url}/v1/jobs`, { method: 'POST', headers: auth, body: JSON.stringify({ request: chat('wait here') }) })).json()) as { id: string };
      const act = async (path: string) => (await fetch(`${apiOnly.url}/admin/queues/api/queues/llm-idle${path}`, { method: 'PUT', headers: { authorization: basic } })).status;
      for (const state of ['wait', 'prioritized', 'delayed']) expect(await act(`/clean/${state}`)).toBe(409);
      expect(await act('/empty')).toBe(409);
      expect(await act(`/${hopJobId(id, 0)}/clean`)).toBe(204);
      const record = (await (await fetch(`${apiOnly.url}/v1/jobs/${id}`, { headers: auth })).json()) as { status: string; error: { message: string } };
      expect(record.status).toBe('cancelled');
      expect(record.error.message).toMatch(/removed from its queue in Bull Board/);
    } finally {
      await apiOnly.close();
      await idle.app.close();
      await dropPrefix(apiOnly.prefix);
    }
  });

  it('lists the failed hop in the failed tab of the page a browser loads', async () => {
    const id = await submit('another bad-request');
    await settled(id);
    await finished('llm-primary', `${hopJobId(id, 0)}`);
    const browser = await launchBrowser();
    try {
      const context = await browser.newContext({ httpCredentials: { username: OPS.user, password: OPS.password } });
      const page = await context.newPage();
      await page.goto(`${broker.url}/admin/queues/queue/llm-primary?status=failed`);
      await page.getByText(`${hopJobId(id, 0)}`, { exact: true }).waitFor({ timeout: 15_000 });
      // The job's error, as the hop's own: not a stack of broker internals.
      await page.getByText('invalid_request 400: Invalid value for temperature.').first().waitFor({ timeout: 15_000 });
      const text = await page.locator('body').innerText();
      expect(text).toContain('summarize → primary/p-model');
      expect(text).not.toMatch(/hop-processor|node_modules/);
      expect(text).toMatch(/FAILED\s*\n\s*\d+/);
    } finally {
      await browser.close();
    }
  });

  it('never shows a prompt, an answer or a secret in any Bull Board response', async () => {
    // A webhook delivery shows where it goes and what it is, not the event body (the job's result) nor the receiver's path.
    const { body } = await board('/api/queues?activeQueue=sy-webhooks&status=completed');
    const delivery = (body.queues as { name: string; jobs: BoardJob[] }[]).find((q) => q.name === 'sy-webhooks')!.jobs[0]!;
    expect(delivery.data).toMatchObject({ tenant: 'team-a', eventId: expect.stringMatching(/^evt_/), receiver: expect.stringMatching(/^http:\/\/11\.[\d.]+:\d+\/…$/) });
    expect(delivery.data).not.toHaveProperty('url');
    expect(String(delivery.data.body ?? '')).toMatch(/^(\d+ bytes, not shown)?$/);
    for (const status of ['completed', 'failed', 'active', 'waiting', 'delayed'])
      for (const q of ['llm-primary', 'llm-secondary', 'sy-webhooks', 'sy-deadlines']) await board(`/api/queues?activeQueue=${q}&status=${status}`);
    const all = seen.join('\n');
    expect(all.length).toBeGreaterThan(10_000);
    for (const secret of [PROMPT, 'Mock reply from', KEY, WEBHOOK_SECRET, 'sk-test-primary-secret-value', 'sk-test-secondary-secret-value', OPS.password]) expect(all).not.toContain(secret);
  });
});
