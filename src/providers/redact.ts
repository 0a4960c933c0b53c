/**
 * Provider error text goes into job records that tenants read, and into logs. Providers and the
 * proxies in front of them sometimes quote what they were sent: a key in a 401, a signed header in
 * a SigV4 refusal, an internal address in a gateway's 502. Every message is passed through here on
 * its way out of the provider client, whichever adapter produced it.
 */

/** Credentials in the shapes providers issue them, wherever they appear in a message. */
const CREDENTIAL_SHAPES: RegExp[] = [
  /\b(?:sk|pk|rk|sess)-[A-Za-z0-9_-]{8,}/g, // OpenAI, Anthropic (sk-ant-…), DeepSeek, Groq-style keys
  /\bBearer\s+[A-Za-z0-9._~+/=-]{8,}/gi,
  /\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/g, // AWS access key ids
  /\bAIza[0-9A-Za-z_-]{20,}/g, // Google API keys
  /\bgsk_[A-Za-z0-9]{20,}/g, // Groq
  /\bxai-[A-Za-z0-9]{20,}/g,
  /(?<![A-Za-z0-9+/_=-])[A-Za-z0-9+/_=-]{40,}(?![A-Za-z0-9+/_=-])/g, // any long opaque token (session tokens, signatures)
];

/** Addresses of the network behind the broker, which a tenant has no business learning. */
const ADDRESSES: RegExp[] = [
  /\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b/g,
  /\[[0-9a-f:]*:[0-9a-f:.]*\](?::\d{1,5})?/gi,
  /\b[a-z][a-z0-9+.-]*:\/\/[^\s'"<>)]+/gi, // URLs (an internal gateway names itself in them)
];

/** The configured secrets of a provider, longest first, so one that contains another goes whole. */
export function secretsOf(values: (string | undefined)[]): string[] {
  return [...new Set(values.filter((v): v is string => typeof v === 'string' && v.length >= 8))].sort((a, b) => b.length - a.length);
}

export function redact(message: string, secrets: string[]): string {
  let out = message;
  for (const s of secrets) out = out.split(s).join('[redacted]');
  for (const shape of CREDENTIAL_SHAPES) out = out.replace(shape, '[redacted]');
  for (const address of ADDRESSES) out = out.replace(address, '[address]');
  return out;
}
