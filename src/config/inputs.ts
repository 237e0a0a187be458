/**
 * Reads and validates every input before anything connects anywhere, one section at a time (inputs/). All problems
 * are collected and reported together; each names the input, what is wrong and a right example.
 */
import type { RunContext } from './context.js';
import type { Command, DeployConfig } from './types.js';
import { checkAlbFits, readAlb } from './inputs/alb.js';
import { Collector, InputError, type InputReader } from './inputs/collector.js';
import { readContainer } from './inputs/container.js';
import { readApp, readImage } from './inputs/image.js';
import { readRollout } from './inputs/rollout.js';
import { readRunSettings } from './inputs/run.js';
import { readSsh } from './inputs/ssh.js';
import { readTraffic } from './inputs/traffic.js';

export { DEFAULTS, envInputReader, InputError, type InputReader } from './inputs/collector.js';
export { parseEnv } from './inputs/container.js';
export { normalizePrivateKey, parseHosts } from './inputs/ssh.js';

export function readConfig(read: InputReader, ctx: RunContext, env: NodeJS.ProcessEnv = process.env): DeployConfig {
  const c = new Collector(read);
  const command = c.oneOf<Command>('command', ['deploy', 'rollback', 'status']);
  const { hosts, ssh } = readSsh(c);
  const rollout = readRollout(c);
  const app = readApp(c);
  const image = readImage(c, command, ctx, env);
  const container = readContainer(c, read);
  const traffic = readTraffic(c, app);
  const alb = readAlb(c, traffic.traffic);
  checkAlbFits(c, alb.alb, image.awsRegion, rollout, hosts.length);
  const run = readRunSettings(c, ctx, app, traffic.traffic);
  if (c.problems.length) throw new InputError(c.problems);
  return { command, hosts, ssh, rollout, app, ...image, ...container, ...traffic, ...alb, ...run };
}
