import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';

export interface Received {
  at: number;
  /** The request's path and query, as sent. */
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

/** What the receiver answers next: a status, optionally after a delay and with headers. */
export interface Answer {
  status: number;
  delayMs?: number;
  headers?: Record<string, string>;
  /** What it answers with; `ok` unless given. */
  body?: string | Uint8Array;
}

/** A receiver on loopback (webhooks, a fake provider endpoint) that records every request byte for byte and answers from a script. */
export class Receiver {
  readonly received: Received[] = [];
  /** Answers to give, in order; when empty, 200. */
  readonly script: Answer[] = [];
  /** Requests being answered now, and the most there have been at once. */
  concurrent = 0;
  maxConcurrent = 0;
  private server: Server | undefined;
  port = 0;

  async start(port = 0): Promise<this> {
    this.server = createServer((req, res) => {
      this.maxConcurrent = Math.max(this.maxConcurrent, ++this.concurrent);
      res.once('close', () => this.concurrent--);
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        this.received.push({ at: Date.now(), url: req.url ?? '', headers: req.headers, body });
        const answer = this.script.shift() ?? { status: 200 };
        setTimeout(() => {
          if (res.destroyed) return;
          res.writeHead(answer.status, answer.headers);
          res.end(answer.body ?? 'ok');
        }, answer.delayMs ?? 0);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', () => resolve()));
    this.port = (this.server.address() as { port: number }).port;
    return this;
  }

  get url(): string {
    return `${this.origin}/hooks`;
  }

  get origin(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise((resolve) => this.server?.close(resolve));
  }
}
