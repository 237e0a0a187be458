import './shim.js';
import { dropEarlySocket, preconnect } from './ssh/preconnect.js';

// The TCP connection to the host opens while the rest of the bundle loads (src/ssh/preconnect.ts).
await preconnect();
const { run } = await import('./main.js');
// A run that never reached the connect step (bad inputs, …): a connect still pending would hold the process.
await run();
dropEarlySocket();
// Everything the run does is awaited by now, and outputs, logs and the summary are written synchronously (stdout is a
// pipe, synchronous on Linux): exit with process.exitCode at once instead of tearing the heap down and waiting for
// closed sockets to finish (~10 ms). The host treats the dropped connection like a closed one.
process.exit();
