import { createHmac } from 'node:crypto';

/** The key bytes of a `whsec_...` secret: base64 after the prefix, as Standard Webhooks defines it. */
function keyBytes(secret: string): Buffer {
  return Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64');
}

/**
 * The `webhook-signature` header: `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, one per
 * secret, space-separated, so receivers keep verifying while a secret is rotated.
 */
export function signWebhook(secrets: string[], id: string, timestamp: number, body: string): string {
  return secrets.map((s) => `v1,${createHmac('sha256', keyBytes(s)).update(`${id}.${timestamp}.${body}`).digest('base64')}`).join(' ');
}
