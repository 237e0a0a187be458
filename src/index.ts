import './shim.js';
import { dropEarlySocket, preconnect } from './ssh/preconnect.js';

// The TCP connection to the host opens while the rest of the bundle loads (src/ssh/preconnect.ts).
await preconnect();
const { run } = await import('./main.js');
// A run that never reached the connect step (bad inputs, …): a connect still pending would hold the process.
await run();
dropEarlySocket();
