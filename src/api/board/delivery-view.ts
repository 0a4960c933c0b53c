import type { DeliveryData } from '../../delivery/webhook-queue.js';

/**
 * A webhook delivery as Bull Board shows it. The delivery job carries the event's body (the job's
 * result, which is the tenant's content) and the receiver's URL (whose path or query often holds
 * the receiver's own secret, as Slack's and Zapier's do): an operator sees neither, only where it
 * goes (the origin), what it is and how big it is.
 */
export function deliveryView(data: DeliveryData): Record<string, unknown> {
  const { body, url, ...rest } = data;
  return {
    ...rest,
    receiver: receiverOrigin(url),
    ...(body !== undefined && { body: `${Buffer.byteLength(body)} bytes, not shown` }),
  };
}

function receiverOrigin(url: string): string {
  try {
    return `${new URL(url).origin}/…`;
  } catch {
    return '(not a URL)';
  }
}
