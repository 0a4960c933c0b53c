import { createServer, type Server } from 'node:http';
import type { Browser } from 'playwright-core';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isLoopbackHost } from '../src/api/loopback-guard.js';
import { configFor, dropPrefix, type MockServer, startBroker, startMock, type TestBroker, withRedis } from './support/broker.js';
import { launchBrowser } from './support/browser.js';

const KEY = 'sy-devmode-tenant-key-0123456789';

describe('which Host names are loopback', () => {
  it.each([
    ['localhost', true], ['localhost:8080', true], ['LOCALHOST:1', true], ['app.localhost:3000', true], ['127.0.0.1', true],
    ['127.0.0.1:8080', true], ['127.9.9.9:1', true], ['[::1]', true], ['[::1]:8080', true],
    ['evil.test', false], ['evil.test:8080', false], ['localhost.evil.test', false], ['127.0.0.1.evil.test', false],
    ['10.0.0.1:8080', false], ['0.0.0.0:8080', false], ['[::ffff:127.0.0.1]:8080', false], ['[fe80::1]', false], ['', false],
  ])('%s → %s', (host, loopback) => expect(isLoopbackHost(host)).toBe(loopback));
});

/*
 * Dev mode asks for no key, so a web page the developer's browser opens must not be able to drive
 * the broker: by DNS rebinding (its own name, pointed at 127.0.0.1) or by a cross-site POST that
 * needs no CORS (a form, or fetch with mode: no-cors).
 */
describe('dev mode refuses foreign Host names and cross-site origins', () => {
  let mock: MockServer;
  let dev: TestBroker;
  let keyed: TestBroker;
  let browser: Browser;
  let attacker: Server;
  let attackerPort = 0;
  const port = () => Number(new URL(dev.url).port);

  beforeAll(async () => {
    mock = await startMock();
    dev = await startBroker(configFor({ p: mock }), { workers: undefined });
    keyed = await startBroker(configFor({ p: mock }, { auth: { api_keys: [{ name: 't', key: KEY }] } }), { workers: undefined });
    // The attacker's page: posts a multipart file to the broker without CORS (what a <form> can do too).
    attacker = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<!doctype html><script>
        window.attack = async (target) => {
          const form = new FormData();
          form.append('purpose', 'batch');
          form.append('file', new Blob(['{"custom_id":"x","method":"POST","url":"/v1/chat/completions","body":{"model":"fast","messages":[{"role":"user","content":"hi"}]}}\\n']), 'a.jsonl');
          await fetch(target + '/v1/files', { method: 'POST', mode: 'no-cors', body: form });
          return 'sent';
        };
      </script>`);
    });
    await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', () => r()));
    attackerPort = (attacker.address() as { port: number }).port;
    browser = await launchBrowser({ 'evil.test': '127.0.0.1' });
  });
  afterAll(async () => {
    await browser?.close();
    attacker?.close();
    await dev?.close();
    await keyed?.close();
    await mock?.app.close();
    await Promise.all([dev && dropPrefix(dev.prefix), keyed && dropPrefix(keyed.prefix)]);
  });

  const raw = async (b: TestBroker, path: string, headers: Record<string, string>, method = 'GET', body?: string) => {
    const res = await request(`${b.url}${path}`, { method, headers, ...(body !== undefined && { body }) });
    const text = await res.body.text();
    return { status: res.statusCode, json: text ? JSON.parse(text) : null };
  };
  const files = () => withRedis((redis) => redis.zcard(dev.runtime.store.keys.fileIndex('default')));

  it('answers 403 to a Host that is not loopback and to a cross-site Origin, in the error shape', async () => {
    const host = await raw(dev, '/v1/jobs', { host: `evil.test:${port()}` });
    expect(host.status).toBe(403);
    expect(host.json.error).toMatchObject({ type: 'permission_error', code: 'dev_mode_host_refused' });
    for (const origin of ['https://evil.test', 'null', `http://evil.test:${port()}`, 'http://127.0.0.1.evil.test']) {
      const res = await raw(dev, '/v1/jobs', { origin, 'content-type': 'application/json' }, 'POST', JSON.stringify({ request: { messages: [{ role: 'user', content: 'x' }] } }));
      expect(res.status, origin).toBe(403);
      expect(res.json.error.code).toBe('dev_mode_origin_refused');
    }
    // What loopback clients send is served as before, pages served from loopback included.
    expect((await raw(dev, '/v1/jobs', { host: `localhost:${port()}` })).status).toBe(200);
    expect((await raw(dev, '/v1/jobs', { origin: `http://localhost:${attackerPort}` })).status).toBe(200);
    expect((await raw(dev, '/healthz', {})).status).toBe(200);
  });

  it('leaves a broker with API keys alone: the key is what guards it', async () => {
    const res = await raw(keyed, '/v1/jobs', { host: 'switchyard.internal:8080', origin: 'https://dashboard.example', authorization: `Bearer ${KEY}` });
    expect(res.status).toBe(200);
  });

  it('in a real browser: a page under a rebound name reads nothing and writes nothing', async () => {
    const page = await browser.newPage();
    try {
      // evil.test now resolves to 127.0.0.1: the rebound page talks to the broker as its own origin.
      const nav = await page.goto(`http://evil.test:${port()}/v1/jobs`);
      expect(nav?.status()).toBe(403);
      expect(await nav?.json()).toMatchObject({ error: { code: 'dev_mode_host_refused' } });
      const posted = await page.evaluate(async () => {
        const res = await fetch('/v1/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request: { messages: [{ role: 'user', content: 'rebound' }] } }) });
        return { status: res.status, body: await res.text() };
      });
      expect(posted.status).toBe(403);
      expect((await raw(dev, '/v1/jobs?limit=100', {})).json.data).toHaveLength(0);
    } finally {
      await page.close();
    }
  });

  it('in a real browser: a cross-site page cannot post a file without CORS, a loopback page can', async () => {
    const page = await browser.newPage();
    try {
      const before = await files();
      await page.goto(`http://evil.test:${attackerPort}/`);
      expect(await page.evaluate((target) => (globalThis as unknown as { attack(t: string): Promise<string> }).attack(target), dev.url)).toBe('sent');
      // The broker refused it before reading the body: no file was stored.
      await new Promise((r) => setTimeout(r, 300));
      expect(await files()).toBe(before);
      await page.goto(`http://localhost:${attackerPort}/`);
      await page.evaluate((target) => (globalThis as unknown as { attack(t: string): Promise<string> }).attack(target), dev.url);
      await expect.poll(files, { timeout: 5000 }).toBe(before + 1);
    } finally {
      await page.close();
    }
  });
});
