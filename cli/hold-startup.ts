import { holdStartupSignals } from './held-signals.js';

// Imported first by the entries (bin/meteorzx.js, cli/main.ts, cli/agent-main.ts), for its effect: a
// service's signals are held from here on, before the rest of the program loads (cli/held-signals.ts).
holdStartupSignals();
