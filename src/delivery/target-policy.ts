import { BlockList, isIP } from 'node:net';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';

type Family = 'ipv4' | 'ipv6';

interface Range {
  net: string;
  bits: number;
  what: string;
}

/** IPv4 ranges a webhook may not reach unless allowed: everything that is not ordinary public unicast. */
const REFUSED_V4: Range[] = [
  { net: '0.0.0.0', bits: 8, what: '"this network"' },
  { net: '10.0.0.0', bits: 8, what: 'private' },
  { net: '100.64.0.0', bits: 10, what: 'carrier-grade NAT' },
  { net: '127.0.0.0', bits: 8, what: 'loopback' },
  { net: '169.254.0.0', bits: 16, what: 'link-local (cloud metadata)' },
  { net: '172.16.0.0', bits: 12, what: 'private' },
  { net: '192.0.0.0', bits: 24, what: 'IETF protocol assignments' },
  { net: '192.0.2.0', bits: 24, what: 'documentation' },
  { net: '192.88.99.0', bits: 24, what: '6to4 relay anycast' },
  { net: '192.168.0.0', bits: 16, what: 'private' },
  { net: '198.18.0.0', bits: 15, what: 'benchmarking' },
  { net: '198.51.100.0', bits: 24, what: 'documentation' },
  { net: '203.0.113.0', bits: 24, what: 'documentation' },
  { net: '224.0.0.0', bits: 4, what: 'multicast' },
  { net: '240.0.0.0', bits: 4, what: 'reserved or broadcast' },
];

/**
 * Every IPv6 form that carries an IPv4 address, refused whole and decided here only. A webhook has
 * no business behind a translator or tunnel, and unwrapping the embedded address form by form is how
 * guards leak (one notation converted and allowed, another refused). Written in either hex or dotted
 * notation, the address is the same bytes, so it meets the same rule.
 */
const EMBEDS_V4: Range[] = [
  { net: '::', bits: 96, what: 'IPv4-compatible' },
  { net: '::ffff:0:0', bits: 96, what: 'IPv4-mapped' },
  { net: '::ffff:0:0:0', bits: 96, what: 'IPv4-translated (SIIT)' },
  { net: '64:ff9b::', bits: 96, what: 'NAT64' },
  { net: '64:ff9b:1::', bits: 48, what: 'local-use NAT64' },
  { net: '2002::', bits: 16, what: '6to4' },
  { net: '2001::', bits: 32, what: 'Teredo' },
];

/** The rest of IPv6 that is not ordinary public unicast. */
const REFUSED_V6: Range[] = [
  // Named before ::/96, which holds them too, so a refusal says what they are.
  { net: '::', bits: 128, what: 'unspecified' },
  { net: '::1', bits: 128, what: 'loopback' },
  ...EMBEDS_V4,
  { net: '100::', bits: 64, what: 'discard-only' },
  { net: '2001:2::', bits: 48, what: 'benchmarking' },
  { net: '2001:db8::', bits: 32, what: 'documentation' },
  { net: '3fff::', bits: 20, what: 'documentation' },
  { net: 'fc00::', bits: 7, what: 'unique local (ULA)' },
  { net: 'fe80::', bits: 10, what: 'link-local' },
  { net: 'fec0::', bits: 10, what: 'site-local (deprecated)' },
  { net: 'ff00::', bits: 8, what: 'multicast' },
];

/** Public IPv6 is only ever assigned from 2000::/3; anything outside it is reserved or one of the above. */
const GLOBAL_UNICAST_V6 = subnet('2000::', 3, 'ipv6');

/** A name that does not resolve in this long is refused at intake rather than hold the request. */
const RESOLVE_TIMEOUT_MS = 3000;

export class TargetRefused extends Error {
  override name = 'TargetRefused';

  constructor(
    message: string,
    /** `policy`: the URL may never receive webhooks; `unresolvable`: its host did not resolve (now). */
    readonly kind: 'policy' | 'unresolvable' = 'policy',
  ) {
    super(message);
  }
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A set of ranges of ONE family. node:net's BlockList, holding ::ffff:0:0/96, answers true for
 * every IPv4 address (it compares IPv4 as IPv4-mapped IPv6), and holding an IPv4 range it matches
 * IPv4-mapped IPv6 addresses; so each list holds one family and is only asked about that family.
 */
class Ranges {
  private readonly lists: Record<Family, { range: Range; list: BlockList }[]> = { ipv4: [], ipv6: [] };

  add(family: Family, range: Range): void {
    this.lists[family].push({ range, list: subnet(range.net, range.bits, family) });
  }

  /** The range holding the address, if any. */
  find(address: string): Range | undefined {
    const family = familyOf(address);
    if (!family) return undefined;
    return this.lists[family].find(({ list }) => list.check(address, family))?.range;
  }
}

/**
 * Where webhooks may go. Only http(s); every address a host resolves to is checked, and the
 * connection is made to an address that passed (the check runs inside the socket's DNS lookup),
 * so a name that re-resolves to 169.254.169.254 between check and connect gets nowhere.
 */
export class TargetPolicy {
  private readonly refused = new Ranges();
  private readonly allowedNets = new Ranges();
  private readonly allowedHosts = new Set<string>();
  private readonly resolver = new Resolver();

  constructor(private readonly opts: { allowPrivate: boolean; allowlist?: string[] }) {
    for (const range of REFUSED_V4) this.refused.add('ipv4', range);
    for (const range of REFUSED_V6) this.refused.add('ipv6', range);
    for (const entry of opts.allowlist ?? []) {
      const cidr = /^\[?([^\]/]+)\]?(?:\/(\d{1,3}))?$/.exec(entry.trim());
      const family = cidr ? familyOf(cidr[1]!) : undefined;
      if (cidr && family) {
        const max = family === 'ipv4' ? 32 : 128;
        const bits = cidr[2] === undefined ? max : Number(cidr[2]);
        if (bits > max) throw new Error(`webhooks.allowlist: ${entry} has a prefix longer than ${max} bits`);
        this.allowedNets.add(family, { net: cidr[1]!, bits, what: 'allowlisted' });
      } else if (entry.includes('/')) {
        throw new Error(`webhooks.allowlist: ${entry} is neither a host name nor an address or CIDR`);
      } else {
        this.allowedHosts.add(entry.trim().toLowerCase());
      }
    }
  }

  /** Why webhooks may not reach this address, or undefined if they may. Anything that is not an IP address is refused. */
  refusal(address: string): string | undefined {
    if (this.opts.allowPrivate) return undefined;
    const family = familyOf(address);
    if (!family) return 'not an IP address';
    if (this.allowedNets.find(address)) return undefined;
    const range = this.refused.find(address);
    if (range) return `${range.what} (${range.net}/${range.bits})`;
    if (family === 'ipv6' && !GLOBAL_UNICAST_V6.check(address, 'ipv6')) return 'outside IPv6 global unicast (2000::/3)';
    return undefined;
  }

  isRefusedAddress(address: string): boolean {
    return this.refusal(address) !== undefined;
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
    // The URL parser has already normalised the host: 0x7f.1 is 127.0.0.1, [::ffff:127.0.0.1] is [::ffff:7f00:1].
    const host = url.hostname.replace(/^\[|\]$/g, '');
    if (this.opts.allowPrivate || this.allowedHosts.has(host.toLowerCase())) return;
    if (isIP(host)) {
      const why = this.refusal(host);
      if (why) throw new TargetRefused(`${host} is ${why}; webhooks may only reach public addresses`);
      return;
    }
    for (const address of await this.resolver.resolve(host)) {
      const why = this.refusal(address);
      if (why) throw new TargetRefused(`${host} resolves to ${address}, ${why}; webhooks may only reach public addresses`);
    }
  }

  /** A `lookup` for sockets: resolves, refuses if any address is off limits, connects to a checked one. */
  readonly lookup = (hostname: string, options: { all?: boolean }, callback: LookupCallback): void => {
    dnsLookup(hostname, { all: true }, (err, addresses) => {
      if (err) return callback(err, []);
      const allowedHost = this.opts.allowPrivate || this.allowedHosts.has(hostname.toLowerCase());
      for (const { address } of allowedHost ? [] : addresses) {
        const why = this.refusal(address);
        if (!why) continue;
        const e = new TargetRefused(`${hostname} resolves to ${address}, ${why}, which webhooks may not reach`) as NodeJS.ErrnoException;
        e.code = 'EREFUSEDTARGET';
        return callback(e, []);
      }
      if (options.all) return callback(null, addresses);
      callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };
}

function familyOf(address: string): Family | undefined {
  const v = isIP(address);
  return v === 4 ? 'ipv4' : v === 6 ? 'ipv6' : undefined;
}

function subnet(net: string, bits: number, family: Family): BlockList {
  const list = new BlockList();
  list.addSubnet(net, bits, family);
  return list;
}

/** Lookups for the intake's checks at once; the rest wait, so a bulk of 10,000 names is not 10,000 lookups in flight. */
const MAX_LOOKUPS_IN_FLIGHT = 16;
/** How long an intake check trusts a host's addresses; the sender resolves again for each connection anyway. */
const RESOLVED_TTL_MS = 30_000;
const RESOLVED_KEPT = 1000;

/**
 * The intake's name lookups: one per host at a time however many jobs name it (a bulk request
 * usually names one webhook host), recent answers reused for a short while, and a bound on
 * lookups in flight. Only the intake's check reads it; the socket lookup never does.
 */
export class Resolver {
  constructor(private readonly lookup: (host: string) => Promise<string[]> = lookupAll) {}

  private readonly recent = new Map<string, { at: number; addresses: Promise<string[]> }>();
  private inFlight = 0;
  private readonly queue: (() => void)[] = [];

  resolve(host: string): Promise<string[]> {
    const key = host.toLowerCase();
    const hit = this.recent.get(key);
    if (hit && Date.now() - hit.at < RESOLVED_TTL_MS) return hit.addresses;
    const addresses = this.bounded(() => this.lookup(host));
    if (this.recent.size >= RESOLVED_KEPT) this.recent.delete(this.recent.keys().next().value!);
    this.recent.set(key, { at: Date.now(), addresses });
    // A failure is not remembered: the next job naming the host asks again.
    addresses.catch(() => this.recent.get(key)?.addresses === addresses && this.recent.delete(key));
    return addresses;
  }

  private async bounded<T>(fn: () => Promise<T>): Promise<T> {
    if (this.inFlight >= MAX_LOOKUPS_IN_FLIGHT) await new Promise<void>((r) => this.queue.push(r));
    else this.inFlight++;
    try {
      return await fn();
    } finally {
      // A slot is handed straight to the next waiter, so none is taken in between.
      const next = this.queue.shift();
      if (next) next();
      else this.inFlight--;
    }
  }
}

export function lookupAll(host: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new TargetRefused(`cannot resolve ${host} within ${RESOLVE_TIMEOUT_MS} ms`, 'unresolvable')), RESOLVE_TIMEOUT_MS);
    dnsLookup(host, { all: true }, (err, addresses) => {
      clearTimeout(timer);
      if (err) reject(new TargetRefused(`cannot resolve ${host}: ${err.code ?? err.message}`, 'unresolvable'));
      else resolve(addresses.map((a) => a.address));
    });
  });
}
