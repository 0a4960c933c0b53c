/** Bedrock cross-region inference profiles prefix the model id: `us.anthropic.claude-…`. */
const REGION_PREFIX = /^(us|eu|apac|global|us-gov)\./;

/** What may follow a table key in a longer id: a date, a version, a tag (`-20250929`, `:0`, `@001`). */
const SUFFIX = /^[-:@]|^$/;

/**
 * Facts about models keyed by model id, found for the many spellings one model goes by across
 * providers (vendor-prefixed, region-prefixed, dated, versioned), with config overrides first.
 */
export class ModelTable<T> {
  private readonly keys: string[];
  /** Lookups are per call on the hot path, and a deployment routes to few distinct targets. */
  private readonly cache = new Map<string, T | null>();

  constructor(
    private readonly table: Record<string, T>,
    /** Keyed `provider/model` (that provider only) or `model` (any provider). */
    private readonly overrides: Record<string, T> = {},
  ) {
    // Longest first, so `gpt-4o-mini-2024-07-18` finds `gpt-4o-mini` before `gpt-4o`.
    this.keys = Object.keys(table).sort((a, b) => b.length - a.length);
  }

  get(provider: string, model: string): T | null {
    const cacheKey = `${provider}/${model}`;
    let value = this.cache.get(cacheKey);
    if (value === undefined) {
      value = this.lookup(provider, model);
      // Bounded, because model ids come from callers and need not be few.
      if (this.cache.size < 10_000) this.cache.set(cacheKey, value);
    }
    return value;
  }

  private lookup(provider: string, model: string): T | null {
    const direct = own(this.overrides, `${provider}/${model}`) ?? own(this.overrides, model);
    if (direct !== undefined) return direct;
    // OpenRouter-style ids carry the vendor: `openai/gpt-4o-mini`.
    const bare = model.slice(model.lastIndexOf('/') + 1).replace(REGION_PREFIX, '');
    const listed = own(this.table, bare);
    if (listed !== undefined) return listed;
    // Dated and versioned ids (`claude-sonnet-4-5-20250929`, `anthropic.claude-3-haiku-20240307-v1:0`).
    const key = this.keys.find((k) => bare.startsWith(k) && SUFFIX.test(bare.slice(k.length)));
    return key === undefined ? null : this.table[key]!;
  }
}

/** Only the record's own keys: an id such as `constructor` must not find Object.prototype's. */
function own<T>(record: Record<string, T>, key: string): T | undefined {
  return Object.hasOwn(record, key) ? record[key] : undefined;
}
