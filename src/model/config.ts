import type { ImageRef } from './image.js';

export type Command = 'deploy' | 'rollback' | 'status';
export type Color = 'blue' | 'green';
export type Traffic = 'nginx' | 'port-swap' | 'haproxy' | 'alb' | 'caddy';
export type RegistryAuth = 'ecr' | 'ecr-on-host' | 'password' | 'none';
/** How commands reach the hosts: SSH, or AWS Systems Manager Run Command (no inbound port). */
export type Transport = 'ssh' | 'ssm';

export interface HostTarget {
  /** What the user wrote, used in logs and reports: `host` or `host:port`. */
  label: string;
  host: string;
  port: number;
  user: string;
  /** The EC2 instance, when the host was named by instance id or found by tag (src/hosts/resolve.ts). */
  instanceId?: string;
  /** Its Name tag. */
  name?: string;
}

/**
 * The hosts input's EC2 part, resolved with DescribeInstances in the run (after the inputs are checked): instance ids,
 * and tag selectors that are ANDed (running instances only).
 */
export interface HostQuery {
  instanceIds: string[];
  tags: Array<{ key: string; value: string }>;
  /** transport: ssh: user and port of the hosts found (ssh-user, ssh-port). */
  user: string;
  port: number;
}

export interface HostKeyPolicy {
  knownHosts: string;
  fingerprints: string[];
  insecureIgnore: boolean;
}

export interface SshSettings {
  privateKey: string;
  passphrase?: string;
  hostKeys: HostKeyPolicy;
  connectTimeoutMs: number;
  /** Extra connect attempts (with backoff) when the TCP connection or handshake fails; never for host-key or auth errors. */
  connectRetries: number;
  /** A bastion: every host's SSH connection is tunnelled through one connection to it (direct-tcpip). */
  jump?: JumpHost;
}

export interface JumpHost {
  target: HostTarget;
  privateKey: string;
  passphrase?: string;
  hostKeys: HostKeyPolicy;
}

export type RolloutStrategy = 'parallel' | 'rolling' | 'canary';
export type OnHostFailure = 'rollback-all' | 'continue';

export interface Rollout {
  strategy: RolloutStrategy;
  /** How many hosts deploy at once: a count, or a percentage of the hosts (rounded up). Unset: 1 for rolling, all otherwise. */
  maxParallel?: { count: number } | { percent: number };
  /** Pause after each batch (once its hosts are verified) before the next one starts. */
  batchWaitMs: number;
  onHostFailure: OnHostFailure;
}

/** smoke-test: the user's command, run on the runner against the healthy candidate before the switch. */
export interface SmokeTest {
  command: string;
  /** all: on every host; first: only on the first host of the hosts input (the canary with rollout: canary). */
  on: 'all' | 'first';
  timeoutMs: number;
}

export interface EnvVar {
  key: string;
  value: string;
}

export interface NginxHealthUrl {
  /** As the user wrote it, for messages. */
  url: string;
  /** The URL's host (with a non-default port): the Host header. */
  host: string;
  port: number;
  /** Path and query. */
  path: string;
}

/**
 * traffic alb: the user's Application Load Balancer. One target group: each host swaps its own two targets in it.
 * A listener (or one of its rules) and a group per colour: every host's candidate is registered in the idle colour's
 * group, then one ModifyListener (ModifyRule) call moves the whole fleet (optionally a canary share first).
 */
export type AlbSettings =
  | { mode: 'target-group'; targetGroup: string }
  | { mode: 'listener'; listenerArn: string; ruleArn?: string; groups: Record<Color, string>; canaryPercent?: number };

export interface DeployConfig {
  command: Command;
  transport: Transport;
  /** Hosts named by address; with a hostQuery, the instances it resolves to are added in the run (resolveHosts). */
  hosts: HostTarget[];
  /** Instance ids and tag selectors of the hosts input, still to resolve (undefined: none). */
  hostQuery?: HostQuery;
  /** ssh-address: which address of an instance found by id or tag SSH connects to. */
  sshAddress: 'private' | 'public';
  ssh: SshSettings;
  /** Inputs that were set but do not apply (e.g. ssh-private-key with transport: ssm): warned about, not fatal. */
  inputWarnings: string[];
  rollout: Rollout;
  app: string;
  image: ImageRef;
  registryAuth: RegistryAuth;
  /** registry-auth password: explicit registry credentials. */
  registryCredentials?: { username: string; password: string };
  awsRegion?: string;
  containerPort: number;
  env: EnvVar[];
  dockerRunArgs: string[];
  dockerCommand: string[];
  healthPath: string;
  /** Host header of health probes; default 127.0.0.1:<port>. */
  healthHost?: string;
  healthIntervalMs: number;
  healthTimeoutMs: number;
  traffic: Traffic;
  ports: Record<Color, number>;
  publicPort: number;
  nginxUpstreamFile: string;
  nginxUpstreamName: string;
  nginxReloadCommand: string;
  /**
   * nginx-switch: `reload` rewrites the upstream file and reloads nginx; `njs` only rewrites it (nginx reads the live
   * port from it at every request through the njs module, see README "Reload-free switch with njs"), so nothing closes
   * the clients' connections, and the old colour is drained by its open connections.
   */
  nginxSwitch: 'reload' | 'njs';
  /**
   * nginx-health-url: probed through the user's nginx after every switch and switch-back (port on the host's loopback,
   * reached through the SSH connection; Host header from the URL unless health-host is set).
   */
  nginxHealthUrl?: NginxHealthUrl;
  /** traffic haproxy: the admin socket (stats socket … level admin), the backend with servers blue and green, the server-state-file. */
  haproxySocket: string;
  haproxyBackend: string;
  haproxyStateFile: string;
  /** traffic caddy: Caddy's admin API on the host's loopback, and the directory of the apps' marker files. */
  caddyAdminUrl: string;
  caddySwitchDir: string;
  /** traffic alb: which way (see AlbSettings); undefined for the other routers. */
  alb?: AlbSettings;
  /** traffic alb: the address the colours' ports are published on (`docker run --publish <address>:<port>:…`). */
  publishAddress?: string;
  drainMs: number;
  /** Wait in the run for the old colour to drain and stop; otherwise a job on the host does it. */
  waitForDrain: boolean;
  stopTimeoutSeconds: number;
  lockTimeoutSeconds: number;
  uploadArtifacts: boolean;
  artifactName: string;
  artifactRetentionDays: number;
  summary: boolean;
  /** command rollback: a tag or digest from the host's history to return to. */
  rollbackTo?: string;
  /** After the switch, keep probing the new colour this long while the old one can still take over. */
  verifyMs: number;
  /** Images of the app's repository kept on each host (newest first, plus those the colours use). */
  keepImages: number;
  statusHistory: number;
  statusLogLines: number;
  /** notify-webhook (a secret): where the run's JSON message is POSTed after a deploy or rollback. */
  notifyWebhook?: string;
  /** Unset when the smoke-test input is empty. */
  smokeTest?: SmokeTest;
}
