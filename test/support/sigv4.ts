import { createHash, createHmac } from 'node:crypto';

/**
 * AWS Signature Version 4 computed here, independently of the code under test, so the Bedrock
 * tests can check what was signed: the path (double-encoded), the signed headers and the body.
 */
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const hmac = (key: string | Buffer, s: string) => createHmac('sha256', key).update(s).digest();

export function parseAuthorization(value: string | string[] | undefined) {
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(String(value ?? ''));
  if (!m) throw new Error(`not a SigV4 Authorization header: ${value}`);
  return { accessKeyId: m[1]!, day: m[2]!, region: m[3]!, service: m[4]!, signedHeaders: m[5]!.split(';'), signature: m[6]! };
}

export function expectedSignature(args: { canonicalUri: string; headers: Record<string, string | string[] | undefined>; signedHeaders: string[]; body: string; secret: string; region: string }): string {
  const amzDate = String(args.headers['x-amz-date']);
  const day = amzDate.slice(0, 8);
  const canonicalRequest = [
    'POST',
    args.canonicalUri,
    '',
    ...args.signedHeaders.map((h) => `${h}:${String(args.headers[h]).trim().replace(/\s+/g, ' ')}`),
    '',
    args.signedHeaders.join(';'),
    sha256(args.body),
  ].join('\n');
  const scope = `${day}/${args.region}/bedrock/aws4_request`;
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonicalRequest)].join('\n');
  const key = [day, args.region, 'bedrock', 'aws4_request'].reduce<Buffer | string>((k, part) => hmac(k, part), `AWS4${args.secret}`);
  return createHmac('sha256', key).update(stringToSign).digest('hex');
}
