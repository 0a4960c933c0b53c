/**
 * A webhook receiver meant to run in a network namespace of its own (see netns.ts), where the
 * parent cannot reach its memory: it prints `{"listening":{address,port}}` once, then every request
 * as one JSON line on stdout ({at, method, url, headers, body}), and answers 200.
 *
 *   ip netns exec <ns> node --import tsx test/support/netns-receiver.ts <address> [port]
 */
import { createServer } from 'node:http';

const [address = '0.0.0.0', port = '0'] = process.argv.slice(2);

const server = createServer((req, res) => {
  let body = '';
  req.setEncoding('utf8');
  req.on('data', (chunk: string) => (body += chunk));
  req.on('end', () => {
    process.stdout.write(`${JSON.stringify({ at: Date.now(), method: req.method, url: req.url, headers: req.headers, body })}\n`);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('ok');
  });
});

server.listen(Number(port), address, () => {
  const bound = server.address() as { address: string; port: number };
  process.stdout.write(`${JSON.stringify({ listening: { address: bound.address, port: bound.port } })}\n`);
});

// The parent ends it with SIGTERM; close so the port is free at once.
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
