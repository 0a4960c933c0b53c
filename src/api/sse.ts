import type { FastifyReply } from 'fastify';

/**
 * A Server-Sent Events response, written straight to the socket: Fastify lets go of the reply
 * (hijack), since an SSE body is written over time. Each write waits for the socket to take it, so
 * a slow reader slows its relay rather than filling memory.
 */
export class SseResponse {
  constructor(private readonly reply: FastifyReply) {}

  open(headers: Record<string, string> = {}): void {
    this.reply.hijack();
    this.reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      // Proxies that buffer (nginx) would hold the chunks back.
      'x-accel-buffering': 'no',
      ...headers,
    });
  }

  get opened(): boolean {
    return this.reply.sent || this.reply.raw.headersSent;
  }

  /** One event: `data:` (and `id:`, for a stream that can be resumed). */
  async send(data: string, id?: number): Promise<void> {
    const raw = this.reply.raw;
    if (raw.destroyed) return;
    const frame = `${id !== undefined ? `id: ${id}\n` : ''}data: ${data}\n\n`;
    if (!raw.write(frame)) await new Promise<void>((resolve) => {
      const done = () => {
        raw.off('drain', done);
        raw.off('close', done);
        resolve();
      };
      raw.once('drain', done);
      raw.once('close', done);
    });
  }

  end(): void {
    if (!this.reply.raw.destroyed) this.reply.raw.end();
  }
}
