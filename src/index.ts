import './shim.js';
import { dropEarlySocket, preconnect } from './ssh/preconnect.js';

// The TCP connection to the host opens while the rest of the bundle loads (src/ssh/preconnect.ts).
await preconnect();
const { run } = await import('./main.js');
// A run that never reached the connect step (bad inputs, …): a connect still pending would hold the process.
await run();
dropEarlySocket();
// Everything the run does is awaited by now, and outputs, logs and the summary are written synchronously: once what is
// still queued for stdout and stderr (pipes to the runner, written as the runner reads them) is out, exit with
// process.exitCode at once instead of tearing the heap down and waiting for closed sockets to finish (~10 ms). The
// host treats the dropped connection like a closed one.
const drained = (s: NodeJS.WriteStream) => (s.writableLength ? new Promise<void>((r) => s.write('', () => r())) : undefined);
await Promise.all([drained(process.stdout), drained(process.stderr)]);
process.exit();
