import { runSubmit } from '../../src/cli/submit.js';

// Stands in for `switchyard submit …` until main.ts dispatches to it: the command name is dropped as main would.
const args = process.argv.slice(2);
if (args[0] === 'submit') args.shift();
process.exit(await runSubmit(args));
