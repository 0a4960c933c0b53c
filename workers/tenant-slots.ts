/** A delivery done within this is quick: a tenant whose deliveries are quick is not held to its cap. */
const QUICK_MS = 1_000;
/** Bounds on how long a delivery whose tenant is at its cap goes back to the queue for. */
const WAIT_MIN_MS = 100;
const WAIT_MAX_MS = 30_000;

interface TenantState {
  /** Start times of this tenant's deliveries in flight here. */
  inFlight: Set<number>;
  /** Running average of how long one of its deliveries holds a slot (ms); undefined until one has. */
  paceMs: number | undefined;
}

/**
 * Per-tenant fairness among one sender process's delivery slots. A tenant whose receiver is slow
 * (its deliveries hold slots for long, or its pace is not known yet) may hold at most `cap` of
 * them; a tenant whose deliveries are quick takes what slots there are, so one busy tenant's
 * throughput is not cut to a share it does not need. Each sender process keeps its own count: a
 * tenant holds at most `cap` slots per process, so its share of the whole fleet is the same, and a
 * delivery costs no Redis round trip to be fair.
 */
export class TenantSlots {
  private readonly tenants = new Map<string, TenantState>();

  constructor(private readonly cap: number) {}

  private state(tenant: string): TenantState {
    let s = this.tenants.get(tenant);
    if (!s) this.tenants.set(tenant, (s = { inFlight: new Set(), paceMs: undefined }));
    return s;
  }

  /**
   * A slot for one delivery of `tenant` (a release function), or how long (ms) the delivery should
   * wait in the queue before it asks again.
   */
  take(tenant: string, now = Date.now()): { release: () => void } | { waitMs: number } {
    const s = this.state(tenant);
    let lingering = 0;
    for (const started of s.inFlight) if (now - started > QUICK_MS) lingering++;
    const capped = s.paceMs === undefined || s.paceMs > QUICK_MS || lingering >= this.cap;
    if (capped && s.inFlight.size >= this.cap) {
      // About as long as a slot of this tenant takes to come free (soon, while its pace is unknown),
      // jittered so the waiting ones do not all come back together.
      const expected = s.paceMs ?? WAIT_MIN_MS;
      return { waitMs: Math.round(Math.min(WAIT_MAX_MS, Math.max(WAIT_MIN_MS, expected)) * (0.5 + Math.random())) };
    }
    // Two deliveries may start in the same millisecond: keep each start distinct.
    let started = now;
    while (s.inFlight.has(started)) started += 0.001;
    s.inFlight.add(started);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        s.inFlight.delete(started);
        const held = Date.now() - started;
        s.paceMs = s.paceMs === undefined ? held : s.paceMs * 0.8 + held * 0.2;
      },
    };
  }
}
