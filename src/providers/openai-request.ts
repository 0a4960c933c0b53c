/**
 * Reading the OpenAI-format request, for the adapters that translate it into another wire format:
 * the small parsing every one of them needs, written once.
 */

export type Obj = Record<string, unknown>;

export const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * A tool call's arguments as the object other formats want, from OpenAI's JSON string. Anything
 * that is not a JSON object is sent as `{}` and reported in `dropped`, never passed on half-parsed.
 */
export function toolArguments(args: unknown, at: string, dropped: string[]): Obj {
  if (args === undefined || args === null || args === '') return {};
  try {
    const value: unknown = typeof args === 'string' ? JSON.parse(args) : args;
    if (isObj(value)) return value;
  } catch {
    // reported below
  }
  dropped.push(`${at}.function.arguments: not a JSON object, sent as {}`);
  return {};
}

/** `data:<mime>[;params];base64,<data>` split into its media type and base64 data. */
export function parseDataUrl(url: unknown): { mime: string; data: string } | null {
  const match = typeof url === 'string' ? /^data:([^;,]+)(?:;[^,]*)?;base64,(.*)$/s.exec(url) : null;
  return match ? { mime: match[1]!.toLowerCase(), data: match[2]! } : null;
}

/**
 * The request fields a translation does not carry, each as `<field>: <why>` for the attempt's
 * `dropped` list. A field the translation reads, or one whose value only asks for what the target
 * does anyway (`isNoOp`), is not reported.
 */
export function untranslatedFields(
  request: Obj,
  translation: { reads: ReadonlySet<string>; why: Readonly<Record<string, string>>; otherwise: string; isNoOp: (key: string, value: unknown) => boolean },
): string[] {
  return Object.entries(request)
    .filter(([key, value]) => !translation.reads.has(key) && !translation.isNoOp(key, value))
    .map(([key]) => `${key}: ${Object.hasOwn(translation.why, key) ? translation.why[key] : translation.otherwise}`);
}
