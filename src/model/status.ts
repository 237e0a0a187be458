/** `command: status`: what runs where on each host, as values (the status JSON output, schemaVersion 1). */
import type { Color } from './config.js';

export interface ColorStatus {
  exists: boolean;
  container?: string;
  state?: string;
  role: 'live' | 'standby' | 'none';
  image?: string;
  digest?: string;
  deployId?: string;
  deployedAt?: string;
  runUrl?: string;
  actor?: string;
  startedAt?: string;
  uptimeSeconds?: number;
  restartCount?: number;
  exitCode?: number;
  health?: { ok: boolean; status?: number; error?: string };
  cpuPercent?: string;
  memUsage?: string;
  memPercent?: string;
  logs?: string;
}

export interface Finding {
  level: 'error' | 'warning' | 'info';
  message: string;
}

/**
 * The fields a router adds to a host's status (haproxy: HAProxy's view; alb: the load balancer's): each router's
 * status.ts augments this interface, so the status JSON keeps one field per router without the model knowing them.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface RouterStatusFields {}

export interface HostStatus extends RouterStatusFields {
  host: string;
  reachable: boolean;
  error?: string;
  live?: Color;
  traffic: string;
  upstream?: { file: string; port?: number; color?: Color; exists: boolean };
  colors: Record<Color, ColorStatus>;
  leftovers: string[];
  history: Array<Record<string, unknown>>;
  /**
   * held: a deploy's lease is there and not expired (or a deploy by an older version of the action holds the lock
   * file: `legacy`). owner: the lease's owner JSON (deployId, runUrl, actor, since). expiresAt: when the lease runs out
   * unless its holder renews it (every few seconds while the holder runs). stale: a lease that expired without being
   * released (its runner vanished); the next deploy takes it over. draining: a deploy's background job is still
   * letting the old colour finish its requests before stopping it.
   */
  lock: {
    held: boolean;
    owner?: Record<string, unknown>;
    draining?: boolean;
    expiresAt?: string;
    stale?: boolean;
    legacy?: boolean;
  };
  disk?: { path: string; usedPercent: number; availableKb: number };
  findings: Finding[];
}

export interface StatusReport {
  schemaVersion: number;
  app: string;
  generatedAt: string;
  durationMs: number;
  hosts: HostStatus[];
}
