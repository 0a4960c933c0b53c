/**
 * A caller in a process of its own: posts `total` jobs to `origin` at `perSecond` and prints their
 * ids as JSON. The overhead row runs its paced phases through it, so the broker's event loop
 * carries only the broker's work, as in a deployment, where callers are other machines: the
 * harness's own HTTP client in the broker's process had its CPU and its garbage land in the
 * broker's latency.
 *
 * node paced-caller.js <origin> <total> <perSecond>
 */
import { Pool } from 'undici';
import { chatBody, paced } from './harness.js';

const [origin, total, perSecond] = process.argv.slice(2);
const pool = new Pool(origin!, { connections: 64 });
const ids: string[] = new Array(Number(total));
await paced(Number(total), Number(perSecond), async (i) => {
  const res = await pool.request({ path: '/v1/jobs', method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request: chatBody(i) }) });
  const text = await res.body.text();
  if (res.statusCode !== 202) throw new Error(`POST /v1/jobs answered ${res.statusCode}: ${text}`);
  ids[i] = (JSON.parse(text) as { id: string }).id;
});
await pool.close();
process.stdout.write(JSON.stringify(ids));
