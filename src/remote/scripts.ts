/**
 * Remote scripts, built by pure functions. Each returns a constant POSIX sh body plus the
 * values it needs as positional arguments (quoted by the transport) or as stdin (secrets,
 * file contents) — no value is ever spliced into shell text.
 *
 * The builders live in one module per concern (common, lease, pull, containers, health-scripts, finish); this
 * module re-exports them, so importers need not know which.
 */
export { secretTempLines, stateDir, type RemoteScript } from './common.js';
export * from './lease.js';
export * from './pull.js';
export * from './containers.js';
export * from './health-scripts.js';
export * from './finish.js';
