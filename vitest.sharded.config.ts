import { configDefaults, defineConfig, mergeConfig } from 'vitest/config';
import base from './vitest.config.js';

/**
 * `npm run test:sharded`: the suite again on the sharded key layout (redis.shards: 8), less the
 * files no key layout can change: wire formats, config and request parsing, documents, process
 * signals, and the tests that pick a layout of their own. CI runs both passes within its budget.
 */
export default mergeConfig(
  base,
  defineConfig({
    test: {
      exclude: [
        ...configDefaults.exclude,
        'test/providers/**',
        'test/{config,validation,target-policy,pricing,error-taxonomy}.test.ts',
        'test/{openapi,readme,layout,deployment-files}.test.ts',
        'test/{fuzz,shutdown-signals,cli-main,dev-mode,redis-resolution}.test.ts',
        'test/{keys,cluster-slots,cluster-sharding}.test.ts',
      ],
    },
  }),
);
