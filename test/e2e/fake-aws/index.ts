/**
 * Stand-ins for the AWS APIs of `transport: ssm` (SSM Run Command, EC2 DescribeInstances), sharing one instance
 * inventory (default: the fleet hosts bgf-h1..3 plus a stopped look-alike). Usage:
 *
 *   const aws = await startFakeAws();                       // or startFakeAws({ instances: [...], ssm: {...} })
 *   await runAction(inputs, { env: aws.env });              // the action's real SDK clients talk to the stand-ins
 *   expect(JSON.stringify(aws.ssm.sentParameters())).not.toContain(secret);
 *   await aws.close();
 */
import { InstanceStore, fleetInstances, type FakeInstanceSpec } from './common.js';
import { startFakeEc2, type FakeEc2 } from './ec2.js';
import { startFakeSsm, type FakeSsm, type FakeSsmOptions } from './ssm.js';

export { fleetInstances, fleetInstanceId, fleetPrivateIp, STOPPED_INSTANCE_ID, InstanceStore } from './common.js';
export type { FakeAwsRequest, FakeInstance, FakeInstanceSpec, FaultSpec, InstanceState } from './common.js';
export type { FakeEc2 } from './ec2.js';
export type { FakeInvocation, FakeSsm, FakeSsmOptions, InvocationStatus } from './ssm.js';
export { STDERR_LIMIT, STDOUT_LIMIT } from './ssm.js';

export interface FakeAwsOptions {
  /** the inventory (default fleetInstances(): bgf-h1..3 tagged Role=backend, plus a stopped one with the same tags) */
  instances?: FakeInstanceSpec[];
  /** AWS_REGION in env (default us-east-1) */
  region?: string;
  ssm?: FakeSsmOptions;
}

export interface FakeAws {
  /**
   * Environment for a process using the real SDK (the action under test): endpoints, region, dummy static
   * credentials, and no way to find other credentials (no profile, config files, IMDS).
   */
  env: Record<string, string>;
  /** the inventory: change it during a test (store.setState(id, 'stopped'), store.setOnline(id, false), ...) */
  instances: InstanceStore;
  ssm: FakeSsm;
  ec2: FakeEc2;
  close(): Promise<void>;
}

export const FAKE_ACCESS_KEY_ID = 'AKIAFAKEAWS000000000';
export const FAKE_SECRET_ACCESS_KEY = 'fake-aws-secret-access-key';

export async function startFakeAws(opts: FakeAwsOptions = {}): Promise<FakeAws> {
  const instances = new InstanceStore(opts.instances ?? fleetInstances());
  const ssm = await startFakeSsm(instances, opts.ssm);
  const ec2 = await startFakeEc2(instances).catch(async (e: unknown) => {
    await ssm.close();
    throw e;
  });
  const region = opts.region ?? 'us-east-1';
  return {
    env: {
      AWS_ENDPOINT_URL_SSM: ssm.url,
      AWS_ENDPOINT_URL_EC2: ec2.url,
      AWS_REGION: region,
      AWS_DEFAULT_REGION: region,
      AWS_ACCESS_KEY_ID: FAKE_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: FAKE_SECRET_ACCESS_KEY,
      // an empty session token would be sent as a header; a real one from the runner's env must not leak in
      AWS_SESSION_TOKEN: '',
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_CONFIG_FILE: '/dev/null',
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      AWS_PROFILE: '',
      // the stand-ins speak plain HTTP on 127.0.0.1: no proxy in between
      NO_PROXY: '127.0.0.1',
      no_proxy: '127.0.0.1'
    },
    instances,
    ssm,
    ec2,
    close: async () => {
      await Promise.all([ssm.close(), ec2.close()]);
    }
  };
}
