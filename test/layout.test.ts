import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = resolve(import.meta.dirname, '..');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** Where each relative import of `file` points, from the project root. */
const importsOf = (file: string) =>
  [...readFileSync(file, 'utf8').matchAll(/\bfrom\s+'(\.[^']+)'/g)].map((m) => relative(root, resolve(dirname(file), m[1]!)));

describe('the layout', () => {
  it('keeps the API apart from the workers: nothing under src/api imports from workers/, types included', () => {
    const files = sources(join(root, 'src/api'));
    expect(files.length).toBeGreaterThan(10);
    const crossings = files.flatMap((f) => importsOf(f).filter((to) => to.startsWith('workers/')).map((to) => `${relative(root, f)} → ${to}`));
    expect(crossings).toEqual([]);
  });
});
