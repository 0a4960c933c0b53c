import type { Config } from '../config/schema.js';

/** A task or model the config does not know; the intake answers 400 naming `param`. */
export class RouteError extends Error {
  constructor(
    message: string,
    readonly param: 'task' | 'model',
  ) {
    super(message);
  }
}

/** Turns a job's `task` / `model` into its ordered fallback chain of `provider/model` targets. */
export class Router {
  constructor(
    private readonly config: Pick<Config, 'models' | 'tasks' | 'providers'>,
    private readonly health?: { isUnavailable(provider: string): boolean },
  ) {}

  /** The first hop worth trying: the first target neither open nor throttled (or the first, if none is). */
  firstHop(chain: string[]): number {
    if (!this.health) return 0;
    const i = chain.findIndex((ref) => !this.health!.isUnavailable(ref.slice(0, ref.indexOf('/'))));
    return i < 0 ? 0 : i;
  }

  resolve(job: { task?: string | undefined; model?: string | undefined }): string[] {
    if (job.model !== undefined) return this.resolveModel(job.model, 'model');
    const task = job.task ?? 'default';
    // Own keys only: a task named "constructor" or "__proto__" is unknown, not Object's.
    const route = Object.hasOwn(this.config.tasks, task) ? this.config.tasks[task] : undefined;
    if (route === undefined) {
      throw new RouteError(`unknown task "${task}"; configured tasks: ${Object.keys(this.config.tasks).join(', ')}`, 'task');
    }
    return typeof route === 'string' ? this.resolveModel(route, 'task') : [...route];
  }

  private resolveModel(name: string, param: 'task' | 'model'): string[] {
    const alias = Object.hasOwn(this.config.models, name) ? this.config.models[name] : undefined;
    if (alias) return [...alias];
    const slash = name.indexOf('/');
    if (slash > 0 && slash < name.length - 1) {
      const provider = name.slice(0, slash);
      if (Object.hasOwn(this.config.providers, provider)) return [name];
      throw new RouteError(`unknown provider "${provider}" in model "${name}"`, param);
    }
    throw new RouteError(
      `unknown model "${name}": use an alias (${Object.keys(this.config.models).join(', ')}) or "provider/model"`,
      param,
    );
  }
}
