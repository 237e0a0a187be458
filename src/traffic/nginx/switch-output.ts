/**
 * The one parser of the nginx switch script's output (writeUpstreamScript in src/remote/scripts.ts). Markers, one a line:
 *   @@masters <pid>...           nginx masters in the SSH session's PID namespace, before the reload
 *   @@workers-before <pid>...    their workers, before the reload
 *   @@reloaded | @@reload-failed <exit code>
 *   @@old-workers <pid>...       the previous workers of the master(s) that took the new config
 *   @@taken-over <new worker> <ms|-> <ms until the first new worker|-> [<master>...]
 *   @@foreign-masters <pid>...   nginx masters in other PID namespaces (containers): not watched
 *   @@no-takeover                masters are visible, none took the new config in time
 *   @@no-workers                 no nginx master is visible at all: whether nginx reloaded cannot be told
 * Any other line (the reload command's own output) is ignored.
 */

export type SwitchOutcome = 'taken-over' | 'no-takeover' | 'no-workers';

export interface SwitchOutput {
  /** nginx masters seen before the reload (empty with an older script that did not print them). */
  masters: string[];
  /** nginx masters seen in other PID namespaces (containers), which are not watched (printed with no-takeover). */
  foreignMasters: string[];
  /** Workers of every visible master before the reload. */
  workersBefore: string[];
  reloaded: boolean;
  /** Exit code of the reload command when it failed. */
  reloadExitCode?: number;
  outcome: SwitchOutcome | undefined;
  /** The masters that took the new config (taken-over). */
  reloadedMasters: string[];
  /** The previous workers of the masters that took the new config (taken-over; otherwise empty). */
  oldWorkers: string[];
  /**
   * The workers the drain watches before the old colour is stopped: every worker seen before the reload. The drain
   * waits only for those shutting down, so another nginx's workers do not hold it up, and a master whose reload was
   * seen a moment after another's (two nginx reloading at once) is still waited for.
   */
  drainWorkers: string[];
  /** From writing the upstream file until no previous worker of a reloaded master accepts, timed on the host. */
  cutoverMs?: number;
  /** From writing the upstream file until the first new worker, timed on the host. */
  switchMs?: number;
}

const words = (s: string) => s.trim().split(/\s+/).filter(Boolean);
const ms = (s: string | undefined) => (s !== undefined && /^\d+$/.test(s) ? Number(s) : undefined);

export function parseSwitchOutput(stdout: string): SwitchOutput {
  const out: SwitchOutput = {
    masters: [],
    foreignMasters: [],
    workersBefore: [],
    reloaded: false,
    outcome: undefined,
    reloadedMasters: [],
    oldWorkers: [],
    drainWorkers: []
  };
  for (const line of stdout.split('\n')) {
    const [marker, ...rest] = words(line);
    switch (marker) {
      case '@@masters':
        out.masters = rest;
        break;
      case '@@foreign-masters':
        out.foreignMasters = rest;
        break;
      case '@@workers-before':
        out.workersBefore = rest;
        break;
      case '@@reloaded':
        out.reloaded = true;
        break;
      case '@@reload-failed':
        out.reloaded = false;
        out.reloadExitCode = ms(rest[0]);
        break;
      case '@@old-workers':
        out.oldWorkers = rest;
        break;
      case '@@taken-over':
        out.outcome = 'taken-over';
        out.cutoverMs = ms(rest[1]);
        out.switchMs = ms(rest[2]);
        out.reloadedMasters = rest.slice(3);
        break;
      case '@@no-takeover':
      case '@@no-workers':
        out.outcome = marker.slice(2) as SwitchOutcome;
        break;
    }
  }
  out.drainWorkers = out.workersBefore;
  return out;
}
