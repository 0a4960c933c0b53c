import { Sha256 } from '@aws-crypto/sha256-js';
import { SignatureV4 } from '@smithy/signature-v4';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
}

export type SignPost = (url: string, headers: Record<string, string>, body: string, signingDate?: Date) => Promise<Record<string, string>>;

/**
 * SigV4 for POSTs to one service in one region; returns the headers to send, signature included.
 *
 * The signer must see the path exactly as the HTTP client sends it: `new URL(url).pathname`, which
 * is what ProviderClient puts on the wire, with the model id percent-encoded once (`:` as `%3A`).
 * SignatureV4 (uriEscapePath, on by default) encodes that path once more for the canonical
 * request (`%253A`), which is what SigV4 expects for every service but S3; signing the decoded
 * id instead would yield a signature AWS rejects.
 */
export function sigV4(opts: { region: string; service: string; credentials: AwsCredentials }): SignPost {
  const signer = new SignatureV4({ service: opts.service, region: opts.region, credentials: opts.credentials, sha256: Sha256 });
  return async (url, headers, body, signingDate) => {
    const { protocol, hostname, port, host, pathname, searchParams } = new URL(url);
    const signed = await signer.sign(
      {
        method: 'POST',
        protocol,
        hostname,
        ...(port && { port: Number(port) }),
        path: pathname,
        query: Object.fromEntries(searchParams),
        // undici sends this same value (origin host, port when not the default), so it is signed as sent.
        headers: { ...headers, host },
        body,
      },
      signingDate && { signingDate },
    );
    return signed.headers;
  };
}
