/**
 * Opens SSM "sessions" (nothing is opened: a session is a key on the host, made by its first command). The SDK is
 * loaded lazily (it is most of the bundle) and one client per region is shared by every host of the run. The
 * endpoint comes from the SDK's usual configuration (AWS_ENDPOINT_URL_SSM, AWS_REGION, credentials chain).
 */
import type { DeployConfig, HostTarget } from '../../model/config.js';
import { SsmHost, type SsmSdk } from './host.js';

let sdk: Promise<SsmSdk> | undefined;
let sdkRegion = '';

async function loadSdk(region: string): Promise<SsmSdk> {
  if (!sdk || sdkRegion !== region) {
    sdkRegion = region;
    sdk = import('@aws-sdk/client-ssm').then((m) => ({
      client: new m.SSMClient({ region, maxAttempts: 4 }),
      SendCommandCommand: m.SendCommandCommand,
      GetCommandInvocationCommand: m.GetCommandInvocationCommand,
      CancelCommandCommand: m.CancelCommandCommand
    })) as Promise<SsmSdk>;
  }
  return sdk;
}

/**
 * executionTimeout of a command: the longest one can legitimately run is the lock wait (lock-timeout-seconds) or a
 * drain in the run (wait-for-drain) or a health wait; ten minutes more, at least an hour (SSM's default).
 */
export function executionTimeoutFor(
  cfg: Pick<DeployConfig, 'lockTimeoutSeconds' | 'drainMs' | 'stopTimeoutSeconds' | 'healthTimeoutMs'>
): number {
  const longest = Math.max(
    cfg.lockTimeoutSeconds,
    Math.ceil(cfg.drainMs / 1000) + cfg.stopTimeoutSeconds,
    Math.ceil(cfg.healthTimeoutMs / 1000)
  );
  return Math.min(172800, Math.max(3600, longest + 600));
}

export async function connectSsm(target: HostTarget, cfg: DeployConfig, signal?: AbortSignal): Promise<SsmHost> {
  const region = cfg.awsRegion!;
  return new SsmHost(target, await loadSdk(region), {
    region,
    executionTimeoutSeconds: executionTimeoutFor(cfg),
    signal,
    comment: `bluegreen-ec2-action ${cfg.command} ${cfg.app}`
  });
}
