/**
 * The ALB stand-in without the fleet (`netns: null`): the data plane connects from this process's own network
 * namespace, so targets on 127.0.0.1 (type ip) work. For tests that need no fleet hosts.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  DescribeTargetHealthCommand,
  ElasticLoadBalancingV2Client,
  RegisterTargetsCommand
} from '@aws-sdk/client-elastic-load-balancing-v2';
import { startFakeAlb, type FakeAlb } from './fake-aws/alb.js';
import { waitFor } from './harness.js';

const TARGET_PORT = 19313;
let alb: FakeAlb | undefined;
let target: http.Server | undefined;

afterAll(async () => {
  await alb?.close();
  await new Promise((r) => (target ? target.close(r) : r(undefined)));
});

test('a local ip target gets healthy and serves through the listener; close() ends the child', async () => {
  target = http.createServer((req, res) => res.end(req.url === '/health' ? 'ok' : 'local'));
  await new Promise<void>((r) => target!.listen(TARGET_PORT, '127.0.0.1', r));
  alb = await startFakeAlb({
    netns: null,
    apiPort: 19303,
    targetGroups: [
      {
        name: 'albs-local',
        targetType: 'ip',
        port: (target.address() as AddressInfo).port,
        healthCheck: { path: '/health' }
      }
    ],
    listeners: [{ name: 'web', port: 19304, defaultAction: { forward: [{ targetGroup: 'albs-local' }] } }]
  });
  const elb = new ElasticLoadBalancingV2Client({
    region: alb.env.AWS_REGION,
    endpoint: alb.url,
    credentials: { accessKeyId: alb.env.AWS_ACCESS_KEY_ID, secretAccessKey: alb.env.AWS_SECRET_ACCESS_KEY }
  });
  try {
    const tg = alb.arns.targetGroups['albs-local'];
    await elb.send(new RegisterTargetsCommand({ TargetGroupArn: tg, Targets: [{ Id: '127.0.0.1' }] }));
    await waitFor(
      async () =>
        (await elb.send(new DescribeTargetHealthCommand({ TargetGroupArn: tg }))).TargetHealthDescriptions?.[0]
          ?.TargetHealth?.State === 'healthy',
      {
        what: '127.0.0.1 healthy'
      }
    );
    const body = await (await fetch(`${alb.listenerUrl}/`)).text();
    expect(body).toBe('local');
    expect(alb.served().at(-1)).toMatchObject({ status: 200, targetId: '127.0.0.1', targetPort: TARGET_PORT });
  } finally {
    elb.destroy();
  }
  // the child said nothing on stdout/stderr (no warnings, no stack traces)
  expect(alb.log()).toBe('');
  await alb.close();
  // the listener is gone with the child
  await expect(fetch(`${alb.listenerUrl}/`)).rejects.toThrow();
});
