import './shim.js';
import { preconnectTarget } from './config/inputs/preconnect-target.js';
import { dropEarlySocket, preconnect } from './transport/ssh/preconnect.js';

// The TCP connection to the host opens while the rest of the bundle loads (src/transport/ssh/preconnect.ts).
await preconnect(preconnectTarget(process.env));
const { run } = await import('./main.js');
// A run that never reached the connect step (bad inputs, …): a connect still pending would hold the process.
await run();
dropEarlySocket();
