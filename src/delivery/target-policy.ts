import { BlockList, isIP } from 'node:net';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';

/** Ranges a webhook may not reach unless allowed: private, loopback, link-local (cloud metadata), ULA, and the like. */
const PRIVATE_V4 = [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['198.51.100.0', 24],
  ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const;
// IPv6 forms that embed an IPv4 address (mapped, compatible, SIIT, NAT64, 6to4) are refused whole:
// a webhook has no business there, and checking the embedded address form by form is how guards leak.
const PRIVATE_V6 = [
  ['::', 96], ['::1', 128], ['::ffff:0:0', 96], ['::ffff:0:0:0', 96], ['64:ff9b::', 96], ['2002::', 16],
  ['fc00::', 7], ['fe80::', 10], ['ff00::', 8], ['2001:db8::', 32],
] as const;
/** A name that does not resolve in this long is refused at intake rather than hold the request. */
const RESOLVE_TIMEOUT_MS = 3000;

export class TargetRefused extends Error {
  override name = 'TargetRefused';
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * Where webhooks may go. Only http(s); every address a host resolves to is checked, and the
 * connection is made to an address that passed (the check runs inside the socket's DNS lookup),
 * so a name that re-resolves to 169.254.169.254 between check and connect gets nowhere.
 */
export class TargetPolicy {
  private readonly blocked = new BlockList();
  private readonly allowedNets = new BlockList();
  private readonly allowedHosts = new Set<string>();

  constructor(private readonly opts: { allowPrivate: boolean; allowlist?: string[] }) {
    for (const [net, bits] of PRIVATE_V4) this.blocked.addSubnet(net, bits, 'ipv4');
    for (const [net, bits] of PRIVATE_V6) this.blocked.addSubnet(net, bits, 'ipv6');
    for (const entry of opts.allowlist ?? []) {
      const [net, bits] = entry.split('/');
      if (net && bits && isIP(net)) this.allowedNets.addSubnet(net, Number(bits), isIP(net) === 6 ? 'ipv6' : 'ipv4');
      else if (net && isIP(net)) this.allowedNets.addAddress(net, isIP(net) === 6 ? 'ipv6' : 'ipv4');
      else this.allowedHosts.add(entry.toLowerCase());
    }
  }

  isRefusedAddress(address: string): boolean {
    if (this.opts.allowPrivate) return false;
    // An IPv4 address written as IPv6 (::ffff:127.0.0.1) is the IPv4 address.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
    const ip = mapped ?? address;
    const family = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (this.allowedNets.check(ip, family)) return false;
    return this.blocked.check(ip, family);
  }

  /** Checks a URL at intake: scheme, then every address its host resolves to. */
  async check(raw: string): Promise<void> {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new TargetRefused('not a URL');
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new TargetRefused('only http and https URLs can receive webhooks');
    if (url.username || url.password) throw new TargetRefused('credentials in the URL are not allowed');
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (this.opts.allowPrivate || this.allowedHosts.has(host.toLowerCase())) return;
    const addresses = isIP(host) ? [host] : await resolveAll(host);
    const refused = addresses.find((a) => this.isRefusedAddress(a));
    if (refused) throw new TargetRefused(`${host} resolves to ${refused}, a private, loopback, link-local or metadata address`);
  }

  /** A `lookup` for sockets: resolves, refuses if any address is off limits, connects to a checked one. */
  readonly lookup = (hostname: string, options: { all?: boolean }, callback: LookupCallback): void => {
    dnsLookup(hostname, { all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const allowedHost = this.opts.allowPrivate || this.allowedHosts.has(hostname.toLowerCase());
      const refused = allowedHost ? undefined : addresses.find((a) => this.isRefusedAddress(a.address));
      if (refused) {
        const e = new TargetRefused(`${hostname} resolves to ${refused.address}, which webhooks may not reach`) as NodeJS.ErrnoException;
        e.code = 'EREFUSEDTARGET';
        return callback(e, []);
      }
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

function resolveAll(host: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new TargetRefused(`cannot resolve ${host} within ${RESOLVE_TIMEOUT_MS} ms`)), RESOLVE_TIMEOUT_MS);
    dnsLookup(host, { all: true }, (err, addresses) => {
      clearTimeout(timer);
      if (err) reject(new TargetRefused(`cannot resolve ${host}: ${err.code ?? err.message}`));
      else resolve(addresses.map((a) => a.address));
    });
  });
}
