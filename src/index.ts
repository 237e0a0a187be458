import './shim.js';
import { preconnect } from './ssh/preconnect.js';

// The TCP connection to the host opens while the rest of the bundle loads (src/ssh/preconnect.ts).
await preconnect();
const { run } = await import('./main.js');
void run();
