import type { LookupAddress } from 'node:dns';
import { describe, expect, it } from 'vitest';
import { lookupAll, Resolver, TargetPolicy, TargetRefused } from '../src/delivery/target-policy.js';

const guard = new TargetPolicy({ allowPrivate: false });
const urlFor = (address: string) => (address.includes(':') ? `http://[${address}]:8080/hooks` : `http://${address}:8080/hooks`);

// Public addresses, many of them one step outside a refused range: the guard's job is as much to let
// these through as to stop the others.
const ALLOWED = [
  // IPv4
  '93.184.216.34', '8.8.8.8', '1.1.1.1', '1.0.0.1',
  '9.255.255.255', '11.0.0.1', // either side of 10/8
  '100.63.255.255', '100.128.0.1', // either side of CGNAT 100.64/10
  '126.255.255.255', '128.0.0.1', // either side of 127/8
  '169.253.255.255', '169.255.0.1', // either side of 169.254/16
  '172.15.255.255', '172.32.0.1', // either side of 172.16/12
  '191.255.255.255', '192.0.1.0', '192.0.3.0', // around 192.0.0/24 and 192.0.2/24
  '192.88.98.255', '192.88.100.0', // either side of 192.88.99/24
  '192.167.255.255', '192.169.0.1', // either side of 192.168/16
  '198.17.255.255', '198.20.0.1', // either side of 198.18/15
  '198.51.99.255', '198.51.101.0', '203.0.112.255', '203.0.114.0', // around the documentation /24s
  '223.255.255.255', // just below multicast
  // IPv6
  '2606:4700:4700::1111', '2001:4860:4860::8888', '2a00:1450:4001::1', '2620:fe::fe',
  '2000::1', '3ffe::1', // the ends of 2000::/3 that nothing else claims
  '2001:1::1', // just past Teredo 2001::/32
  '2001:2:1::1', // just past benchmarking 2001:2::/48
  '2001:db7:ffff:ffff::1', '2001:db9::1', // either side of 2001:db8::/32
  '2001:ffff::1', '2003::1', // either side of 6to4 2002::/16
  '3fff:1000::1', // just past documentation 3fff::/20
];

// Each refused range, with addresses at its edges.
const REFUSED = [
  // IPv4
  '0.0.0.0', '0.255.255.255',
  '10.0.0.0', '10.255.255.255',
  '100.64.0.0', '100.127.255.255',
  '127.0.0.1', '127.255.255.255',
  '169.254.0.0', '169.254.169.254', '169.254.255.255',
  '172.16.0.0', '172.31.255.255',
  '192.0.0.0', '192.0.0.255', '192.0.2.0', '192.0.2.255',
  '192.88.99.0', '192.88.99.1', '192.88.99.255',
  '192.168.0.0', '192.168.255.255',
  '198.18.0.0', '198.19.255.255',
  '198.51.100.0', '198.51.100.255', '203.0.113.0', '203.0.113.255',
  '224.0.0.0', '239.255.255.255', '240.0.0.1', '255.255.255.255',
  // IPv6, plain
  '::', '::1',
  '100::1', '100::ffff:ffff:ffff:ffff',
  '2001:2::1', '2001:2:0:ffff:ffff:ffff:ffff:ffff',
  '2001:db8::1', '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff',
  '3fff::1', '3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff',
  'fc00::', 'fd00:ec2::254', 'fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
  'fe80::1', 'febf:ffff::1', 'fe80::1%eth0',
  'fec0::1', 'feff:ffff::1',
  'ff02::1', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
  '1::1', '1fff:ffff::1', '4000::1', 'e000::1', // outside 2000::/3
  // IPv6 that embeds IPv4, refused whole whatever the embedded address, in hex and dotted notation
  '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:93.184.216.34', '::ffff:5db8:d822', '::ffff:0.0.0.0', '::ffff:255.255.255.255',
  '::127.0.0.1', '::7f00:1', '::93.184.216.34', '::5db8:d822', '::255.255.255.255',
  '::ffff:0:127.0.0.1', '::ffff:0:7f00:1', '::ffff:0:93.184.216.34', '::ffff:0:5db8:d822',
  '64:ff9b::8.8.8.8', '64:ff9b::808:808', '64:ff9b::93.184.216.34', '64:ff9b::ffff:ffff',
  '64:ff9b:1::1', '64:ff9b:1:ffff:ffff:ffff:ffff:ffff', '64:ff9b:1::8.8.8.8',
  '2002::', '2002:5db8:d822::1', '2002:7f00:1::', '2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
  '2001::', '2001:0:5db8:d822::1', '2001:0:ffff:ffff:ffff:ffff:ffff:ffff',
];

describe('isRefusedAddress', () => {
  it.each(ALLOWED)('allows the public address %s', (address) => {
    expect(guard.refusal(address)).toBeUndefined();
    expect(guard.isRefusedAddress(address)).toBe(false);
  });

  it.each(REFUSED)('refuses %s', (address) => {
    expect(guard.isRefusedAddress(address)).toBe(true);
  });

  it('treats the hex and dotted notations of one address the same', () => {
    for (const [dotted, hex] of [
      ['::ffff:93.184.216.34', '::ffff:5db8:d822'],
      ['::ffff:127.0.0.1', '::ffff:7f00:1'],
      ['64:ff9b::8.8.8.8', '64:ff9b::808:808'],
      ['::ffff:0:93.184.216.34', '::ffff:0:5db8:d822'],
    ] as const) {
      expect(guard.refusal(dotted)).toBeDefined();
      expect(guard.refusal(dotted)).toBe(guard.refusal(hex));
    }
  });

  it('says which range refused an address', () => {
    expect(guard.refusal('::ffff:93.184.216.34')).toMatch(/IPv4-mapped.*::ffff:0:0\/96/);
    expect(guard.refusal('2001:0:5db8:d822::1')).toMatch(/Teredo/);
    expect(guard.refusal('192.88.99.1')).toMatch(/6to4 relay/);
    expect(guard.refusal('::1')).toMatch(/loopback/);
    expect(guard.refusal('169.254.169.254')).toMatch(/link-local/);
  });

  it('refuses what is not an IP address', () => {
    expect(guard.isRefusedAddress('example.com')).toBe(true);
    expect(guard.isRefusedAddress('')).toBe(true);
  });
});

describe('check(url) with IP literals', () => {
  it.each(ALLOWED.filter((a) => !a.includes('%')))('accepts %s', async (address) => {
    await expect(guard.check(urlFor(address))).resolves.toBeUndefined();
  });

  // A zone id is not valid in a URL, so fe80::1%eth0 cannot be written as one.
  it.each(REFUSED.filter((a) => !a.includes('%')))('refuses %s', async (address) => {
    const err = await guard.check(urlFor(address)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TargetRefused);
    expect((err as Error).message).toMatch(/webhooks may only reach public addresses/);
  });

  it('refuses the forms the URL parser folds into 127.0.0.1', async () => {
    for (const url of ['http://2130706433/', 'http://0x7f.1/', 'http://0177.0.0.1/', 'http://127.1/']) await expect(guard.check(url)).rejects.toThrow(/127\.0\.0\.1/);
  });

  it('refuses a name that resolves to loopback, naming the address', async () => {
    await expect(guard.check('http://localhost:8080/hooks')).rejects.toThrow(/localhost resolves to (127\.0\.0\.1|::1)/);
  });

  it('refuses other schemes and credentials whatever the address', async () => {
    await expect(guard.check('ftp://93.184.216.34/')).rejects.toThrow(/only http and https/);
    await expect(guard.check('http://user:pw@93.184.216.34/')).rejects.toThrow(/credentials/);
    await expect(guard.check('not a url')).rejects.toThrow(/not a URL/);
  });
});

describe('allowlist', () => {
  const listed = new TargetPolicy({ allowPrivate: false, allowlist: ['10.9.8.0/24', '192.168.1.5', 'fd12:3456::/32', 'hooks.internal', 'LOCALHOST'] });

  it('lets through an IPv4 CIDR and nothing next to it', async () => {
    expect(listed.isRefusedAddress('10.9.8.0')).toBe(false);
    expect(listed.isRefusedAddress('10.9.8.255')).toBe(false);
    expect(listed.isRefusedAddress('10.9.9.0')).toBe(true);
    expect(listed.isRefusedAddress('10.9.7.255')).toBe(true);
    await expect(listed.check('http://10.9.8.7/hooks')).resolves.toBeUndefined();
    await expect(listed.check('http://10.9.9.7/hooks')).rejects.toThrow(TargetRefused);
  });

  it('lets through a single address', () => {
    expect(listed.isRefusedAddress('192.168.1.5')).toBe(false);
    expect(listed.isRefusedAddress('192.168.1.6')).toBe(true);
  });

  it('lets through an IPv6 CIDR', async () => {
    expect(listed.isRefusedAddress('fd12:3456::1')).toBe(false);
    expect(listed.isRefusedAddress('fd12:3457::1')).toBe(true);
    await expect(listed.check('http://[fd12:3456:1::9]/hooks')).resolves.toBeUndefined();
  });

  it('matches an address only against entries of its own family', () => {
    // 10.9.8.0/24 is IPv4; the IPv4-mapped form of an address in it stays refused like every embedding form.
    expect(listed.isRefusedAddress('::ffff:10.9.8.7')).toBe(true);
    expect(new TargetPolicy({ allowPrivate: false, allowlist: ['::ffff:10.9.8.0/120'] }).isRefusedAddress('::ffff:10.9.8.7')).toBe(false);
  });

  it('lets through a named host without resolving it, case-insensitively', async () => {
    await expect(listed.check('http://hooks.internal:9000/x')).resolves.toBeUndefined();
    await expect(listed.check('http://HOOKS.internal/x')).resolves.toBeUndefined();
    await expect(listed.check('http://localhost/x')).resolves.toBeUndefined();
    await expect(listed.check('http://other.internal/x')).rejects.toThrow(TargetRefused);
  });

  it('still refuses credentials and other schemes for an allowlisted host', async () => {
    await expect(listed.check('http://u:p@hooks.internal/x')).rejects.toThrow(/credentials/);
    await expect(listed.check('gopher://hooks.internal/x')).rejects.toThrow(/only http and https/);
  });

  it('rejects an entry that is not a host, an address or a CIDR', () => {
    expect(() => new TargetPolicy({ allowPrivate: false, allowlist: ['10.0.0.0/33'] })).toThrow(/10\.0\.0\.0\/33/);
    expect(() => new TargetPolicy({ allowPrivate: false, allowlist: ['not/a-cidr'] })).toThrow(/not\/a-cidr/);
  });
});

describe('allow_private_targets', () => {
  const open = new TargetPolicy({ allowPrivate: true });

  it('allows every address, embedding forms included', async () => {
    for (const address of [...REFUSED.filter((a) => !a.includes('%')), ...ALLOWED]) {
      expect(open.isRefusedAddress(address)).toBe(false);
      await expect(open.check(urlFor(address))).resolves.toBeUndefined();
    }
    await expect(open.check('http://localhost:8080/hooks')).resolves.toBeUndefined();
  });

  it('still allows only http(s) without credentials', async () => {
    await expect(open.check('file:///etc/passwd')).rejects.toThrow(/only http and https/);
    await expect(open.check('http://u:p@127.0.0.1/')).rejects.toThrow(/credentials/);
  });
});

describe('lookup (the socket side)', () => {
  type Result = { err: NodeJS.ErrnoException | null; address: string | LookupAddress[]; family?: number | undefined };
  const lookup = (policy: TargetPolicy, host: string, options: { all?: boolean } = {}) =>
    new Promise<Result>((resolve) => policy.lookup(host, options, (err, address, family) => resolve({ err, address, family })));

  it('refuses a name that resolves to loopback', async () => {
    const { err } = await lookup(guard, 'localhost');
    expect(err).toBeInstanceOf(TargetRefused);
    expect(err?.code).toBe('EREFUSEDTARGET');
    expect(err?.message).toMatch(/localhost resolves to/);
  });

  it('hands a public IPv4 address to the socket, one or all', async () => {
    expect(await lookup(guard, '93.184.216.34')).toEqual({ err: null, address: '93.184.216.34', family: 4 });
    expect(await lookup(guard, '93.184.216.34', { all: true })).toMatchObject({ err: null, address: [{ address: '93.184.216.34', family: 4 }] });
  });

  it('hands a public IPv6 address to the socket', async () => {
    expect(await lookup(guard, '2606:4700:4700::1111')).toEqual({ err: null, address: '2606:4700:4700::1111', family: 6 });
  });

  it('refuses an IPv4-mapped address even of a public IPv4 address', async () => {
    expect((await lookup(guard, '::ffff:93.184.216.34')).err?.code).toBe('EREFUSEDTARGET');
    expect((await lookup(guard, '169.254.169.254')).err?.code).toBe('EREFUSEDTARGET');
  });

  it('lets through what the allowlist or allow_private_targets allows', async () => {
    const byHost = await lookup(new TargetPolicy({ allowPrivate: false, allowlist: ['localhost'] }), 'localhost');
    expect(byHost.err).toBeNull();
    expect(['127.0.0.1', '::1']).toContain(byHost.address);
    expect(await lookup(new TargetPolicy({ allowPrivate: false, allowlist: ['127.0.0.0/8'] }), '127.0.0.1')).toEqual({ err: null, address: '127.0.0.1', family: 4 });
    expect((await lookup(new TargetPolicy({ allowPrivate: true }), 'localhost')).err).toBeNull();
  });

  it('passes a resolution failure through as it is', async () => {
    const { err } = await lookup(guard, 'no-such-host.invalid');
    expect(err).not.toBeInstanceOf(TargetRefused);
    expect(err?.code).toMatch(/ENOTFOUND|EAI_AGAIN/);
  });
});

describe("the intake's name lookups", () => {
  /** The real lookup, counted: how many run, and how many at once. */
  const counted = () => {
    const seen = { calls: 0, inFlight: 0, maxInFlight: 0 };
    const lookup = async (host: string) => {
      seen.calls++;
      seen.maxInFlight = Math.max(seen.maxInFlight, ++seen.inFlight);
      try {
        return await lookupAll(host);
      } finally {
        seen.inFlight--;
      }
    };
    return { seen, lookup };
  };

  it('looks a host up once however many jobs of a bulk request name it', async () => {
    const { seen, lookup } = counted();
    const resolver = new Resolver(lookup);
    const answers = await Promise.all(Array.from({ length: 10_000 }, () => resolver.resolve('localhost')));
    expect(seen.calls).toBe(1);
    expect(answers.every((a) => a.length > 0)).toBe(true);
  });

  it('keeps at most 16 lookups in flight for many distinct hosts', async () => {
    const { seen, lookup } = counted();
    const resolver = new Resolver(lookup);
    // Address literals resolve at once, without a name server, so only the bound is measured.
    const hosts = Array.from({ length: 200 }, (_, i) => `11.0.${i}.1`);
    const answers = await Promise.all(hosts.map((h) => resolver.resolve(h)));
    expect(answers.map((a) => a[0])).toEqual(hosts);
    expect(seen.calls).toBe(200);
    expect(seen.maxInFlight).toBeLessThanOrEqual(16);
    expect(seen.maxInFlight).toBeGreaterThan(1);
  });

  it('remembers no failure: the next job naming the host asks again', async () => {
    const { seen, lookup } = counted();
    const resolver = new Resolver(lookup);
    // Two empty labels: getaddrinfo refuses it at once, without asking a name server.
    await expect(resolver.resolve('no..such.host')).rejects.toBeInstanceOf(TargetRefused);
    await expect(resolver.resolve('no..such.host')).rejects.toBeInstanceOf(TargetRefused);
    expect(seen.calls).toBe(2);
  });
});
