import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readRunContext } from '../../../src/model/context.js';
import { InputError, parseHosts, readConfig } from '../../../src/config/inputs.js';
import { resolveHosts, type DescribeInput, type Ec2Instance } from '../../../src/hosts/resolve.js';

const dir = mkdtempSync(join(tmpdir(), 'bg-unit-'));
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'k')]);
const KEY = readFileSync(join(dir, 'k'), 'utf8');
rmSync(dir, { recursive: true });
const ctx = readRunContext({
  GITHUB_SHA: 'a'.repeat(40),
  GITHUB_RUN_ID: '7',
  GITHUB_REPOSITORY: 'o/r',
  GITHUB_JOB: 'deploy'
});
const ssm = {
  transport: 'ssm',
  hosts: 'tag:Role=backend',
  'app-name': 'backend',
  image: '123456789012.dkr.ecr.us-east-1.amazonaws.com/backend'
};
const reader = (inputs: Record<string, string>) => (name: string) => (inputs[name] ?? '').trim();
const config = (inputs: Record<string, string>) => readConfig(reader(inputs), ctx, {});
function problems(inputs: Record<string, string>): string[] {
  try {
    config(inputs);
  } catch (e) {
    if (e instanceof InputError) return e.problems;
    throw e;
  }
  return [];
}

const fleet: Ec2Instance[] = [1, 2, 3, 4].map((n) => ({
  InstanceId: `i-0f1ee7${String(n).padStart(11, '0')}`,
  PrivateIpAddress: `10.204.0.${10 + n}`,
  State: { Name: n === 4 ? 'stopped' : 'running' },
  Tags: [
    { Key: 'Name', Value: `bgf-h${n}` },
    { Key: 'Role', Value: 'backend' },
    { Key: 'Env', Value: n === 3 ? 'staging' : 'prod' }
  ]
}));

/** DescribeInstances over `fleet` (InstanceIds, tag:K and instance-state-name filters), one instance per page. */
const calls: DescribeInput[] = [];
async function ec2(input: DescribeInput) {
  calls.push(input);
  let list = input.InstanceIds ? fleet.filter((i) => input.InstanceIds!.includes(i.InstanceId!)) : fleet;
  for (const f of input.Filters ?? []) {
    if (f.Name === 'instance-state-name') list = list.filter((i) => f.Values.includes(i.State!.Name!));
    else list = list.filter((i) => i.Tags!.some((t) => `tag:${t.Key}` === f.Name && f.Values.includes(t.Value!)));
  }
  const start = Number(input.NextToken ?? 0);
  return {
    Reservations: list.slice(start, start + 1).map((i) => ({ Instances: [i] })),
    NextToken: start + 1 < list.length ? String(start + 1) : undefined
  };
}

describe('hosts: instance ids and tag selectors', () => {
  test('parsed into a query; addresses stay hosts; ids as outputs write them are accepted back', () => {
    const r = parseHosts(
      '10.0.0.5, tag:Role=backend, tag:aws:autoscaling:groupName=web-asg, i-0f1ee700000000001 (bgf-h1), i-0123abcd',
      'ec2-user',
      22
    );
    expect(r.problems).toEqual([]);
    expect(r.hosts.map((h) => h.host)).toEqual(['10.0.0.5']);
    expect(r.query).toEqual({
      instanceIds: ['i-0f1ee700000000001', 'i-0123abcd'],
      tags: [
        { key: 'Role', value: 'backend' },
        { key: 'aws:autoscaling:groupName', value: 'web-asg' }
      ],
      user: 'ec2-user',
      port: 22
    });
    expect(parseHosts('tag:Role, tag:=x, tag:R=*, i-0123', 'u', 22).problems).toHaveLength(4);
  });

  test('transport: ssm needs no ssh inputs, warns about those set, wants a region, refuses addresses and smoke-test', () => {
    const c = config({ ...ssm, 'ssh-user': 'ubuntu', 'ssh-port': '22' });
    expect(c.transport).toBe('ssm');
    expect(c.hostQuery?.tags).toEqual([{ key: 'Role', value: 'backend' }]);
    expect(c.inputWarnings).toEqual([
      'input ssh-user does not apply with transport: ssm (commands go through AWS Systems Manager, not SSH): ignored'
    ]);
    expect(problems({ ...ssm, image: 'registry.example.com/backend', 'registry-auth': 'none' })).toEqual([
      expect.stringMatching(/^Input "aws-region" is required for transport: ssm/)
    ]);
    expect(problems({ ...ssm, hosts: '10.0.0.5' })).toEqual([
      expect.stringMatching(/is an address: with transport: ssm/)
    ]);
    expect(problems({ ...ssm, 'smoke-test': 'true' })).toEqual([
      expect.stringMatching(/^Input "smoke-test" needs transport: ssh/)
    ]);
  });

  test('resolved to the running instances (ANDed tags, all pages), labelled by id and Name', async () => {
    const c = config(ssm);
    const r = await resolveHosts(c, ec2);
    expect(r.hosts.map((h) => h.label)).toEqual([
      'i-0f1ee700000000001 (bgf-h1)',
      'i-0f1ee700000000002 (bgf-h2)',
      'i-0f1ee700000000003 (bgf-h3)'
    ]);
    expect(r.hosts[0]).toMatchObject({
      host: 'i-0f1ee700000000001',
      instanceId: 'i-0f1ee700000000001',
      name: 'bgf-h1'
    });
    expect(calls.at(-1)?.Filters).toEqual([
      { Name: 'tag:Role', Values: ['backend'] },
      { Name: 'instance-state-name', Values: ['running'] }
    ]);
    const anded = await resolveHosts(config({ ...ssm, hosts: 'tag:Role=backend, tag:Env=prod' }), ec2);
    expect(anded.hosts.map((h) => h.name)).toEqual(['bgf-h1', 'bgf-h2']);
  });

  test('with ssh the private (or public) address, with ssh-user and ssh-port', async () => {
    const KNOWN = '10.204.0.11 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICqzdPktL85becTIoxZNZYiLdHd20uc320Cl7GjZmET+';
    const c = config({
      ...ssm,
      transport: '',
      'ssh-private-key': KEY,
      'ssh-known-hosts': KNOWN,
      hosts: 'i-0f1ee700000000002'
    });
    const r = await resolveHosts(c, ec2);
    expect(r.hosts).toEqual([
      {
        label: 'i-0f1ee700000000002 (bgf-h2)',
        host: '10.204.0.12',
        port: 22,
        user: 'ec2-user',
        instanceId: 'i-0f1ee700000000002',
        name: 'bgf-h2'
      }
    ]);
    await expect(resolveHosts({ ...c, sshAddress: 'public' }, ec2)).rejects.toThrow(/has no public IPv4 address/);
  });

  test('a selector matching nothing fails and says what it looked for; a stopped instance named by id too', async () => {
    await expect(resolveHosts(config({ ...ssm, hosts: 'tag:Role=frontend' }), ec2)).rejects.toThrow(
      'hosts: no running instance matches tag:Role=frontend in us-east-1 (DescribeInstances filters: tag:Role=frontend, instance-state-name=running); nothing was touched'
    );
    await expect(resolveHosts(config({ ...ssm, hosts: 'tag:Name=bgf-h4' }), ec2)).rejects.toThrow(
      /1 instance\(s\) with these tags are not running: i-0f1ee700000000004 \(bgf-h4\) stopped/
    );
    await expect(resolveHosts(config({ ...ssm, hosts: 'i-0f1ee700000000004' }), ec2)).rejects.toThrow(
      /i-0f1ee700000000004 \(bgf-h4\) is stopped/
    );
  });
});
