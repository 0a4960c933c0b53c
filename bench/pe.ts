import { pino } from 'pino';
import { parseConfig } from '../src/config/load.js';
import { startRuntime } from '../src/runtime.js';
import { chatBody } from './harness.js';
import { Redis } from 'ioredis';
import { Session } from 'node:inspector/promises';
import { writeFileSync } from 'node:fs';
const N = Number(process.env.N ?? 20000);
const redisUrl = 'redis://127.0.0.1:6379';
const log = pino({ level: process.env.LVL ?? 'info' }, pino.destination({ dest: '/dev/null', sync: false }));
const config = parseConfig({ redis: { url: redisUrl, prefix: '{prof}' }, providers: { mock: { type: 'openai', base_url: process.env.MOCK!, max_in_flight: Number(process.env.C ?? 50) } }, models: { fast: ['mock/m'] }, tasks: { default: 'fast' } }, {}, 'p');
const a = await startRuntime({ config, redisUrl, log });
for (let i = 0; i < N; i += 500) await Promise.all(Array.from({ length: Math.min(500, N - i) }, (_, k) => a.intake.submit({ priority: 5, metadata: {}, request: chatBody(i + k) }, { tenant: 'b' })));
const sub = new Redis(redisUrl); let c = 0; let done!: () => void; const all = new Promise<void>((r) => (done = r));
sub.on('message', () => { if (++c === N) done(); }); await sub.subscribe(a.store.keys.events);
console.error('filled');
const session = new Session(); session.connect(); if (process.env.PROF) { await session.post('Profiler.enable'); await session.post('Profiler.start'); }
const t0 = performance.now(); const cpu0 = process.cpuUsage();
const w = await startRuntime({ config, redisUrl, log, workers: [] });
await all;
const cpu = process.cpuUsage(cpu0); console.log('jobs/s', Math.round(N / ((performance.now() - t0) / 1000)), 'cpu us/job', ((cpu.user + cpu.system) / N).toFixed(1));
if (process.env.PROF) { const { profile } = await session.post('Profiler.stop'); writeFileSync('/tmp/prof/drain.cpuprofile', JSON.stringify(profile)); }
await w.close(); await a.close(); sub.disconnect();
const r = new Redis(redisUrl); const keys = await r.keys('{prof}*'); for (let i = 0; i < keys.length; i += 500) await r.unlink(...keys.slice(i, i + 500)); r.disconnect();
process.exit(0);
