import { type Browser, chromium } from 'playwright-core';

/** Debian's chromium; playwright-core never downloads a browser of its own. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * A headless Chromium for tests that must see what a browser does. `hostMap` points names at
 * addresses (e.g. `{ 'evil.test': '127.0.0.1' }`), as a DNS answer would, so a page can be served
 * under a foreign name from this machine. Background networking is off: this machine's closed
 * network refuses it, noisily.
 */
export async function launchBrowser(hostMap: Record<string, string> = {}): Promise<Browser> {
  const rules = Object.entries(hostMap).map(([name, address]) => `MAP ${name} ${address}`).join(',');
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', ...(rules ? [`--host-resolver-rules=${rules}`] : []),
    ],
  });
}
