import { open, readFile, rename } from 'node:fs/promises';
import type { JobDefaults } from './input.js';

/** What a run has submitted; enough to wait for its jobs again instead of submitting them twice. */
export interface SubmitState {
  version: 1;
  /** Names this run in its Idempotency-Keys (absent in states written before runs had one). */
  run_id?: string;
  input_sha256: string;
  /** Chunk boundaries, and so the idempotency keys, depend on it. */
  chunk: number;
  /** The command-line defaults the job bodies were built with; a replayed chunk must send the same bodies. */
  defaults: JobDefaults;
  /** Per submitted chunk, by the line number of its first job: the job ids, in the chunk's line order. */
  chunks: Record<string, string[]>;
}

export class StateError extends Error {}

export const statePath = (out: string): string => `${out}.state.json`;

export async function loadState(path: string): Promise<SubmitState | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let state: SubmitState;
  try {
    state = JSON.parse(text) as SubmitState;
  } catch {
    throw new StateError(`${path} is not valid JSON; pass --restart to start over`);
  }
  if (state.version !== 1 || typeof state.input_sha256 !== 'string' || typeof state.chunks !== 'object') {
    throw new StateError(`${path} is not a switchyard submit state file; pass --restart to start over`);
  }
  return state;
}

/**
 * Temp file, fsync, rename: a crash leaves either the old state or the new one, never half of one.
 * The temp name is fixed because only one run may use an output file at a time.
 */
export async function saveState(path: string, state: SubmitState): Promise<void> {
  const tmp = `${path}.tmp`;
  const handle = await open(tmp, 'w');
  try {
    await handle.writeFile(JSON.stringify(state));
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(tmp, path);
}
