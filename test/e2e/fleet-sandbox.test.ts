/**
 * Smoke test of the fleet sandbox itself (independent of the action): the runner reaches the hosts only through the
 * bastion, each host is its own machine (sshd with its own host key, dockerd, nginx, files), hosts pull from the
 * bastion's registry, and each host's nginx answers through its forwarder (keep-alive included).
 * Runs test/sandbox/fleet-up.sh if the fleet is not up (after test/sandbox/up.sh).
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { SANDBOX, q, sh, shOk, waitFor } from './harness.js';
import {
  type Fleet,
  cleanupFleetApp,
  dockerPsOn,
  getWithHost,
  loadFleet,
  onHost,
  onHostOk,
  prepareFleetApp
} from './fleet-harness.js';

const APP = 'fleet-smoke';
let fleet: Fleet;
let knownHostsFile: string;

/** ssh -J through the bastion with only the fleet.json known_hosts lines, strict checking, no ssh_config. */
function sshJ(target: string, cmd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const opts = `-F /dev/null -i ${q(SANDBOX.privateKeyPath)} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=${q(knownHostsFile)} -o ConnectTimeout=10 -o LogLevel=ERROR`;
  // -J passes no -o options to the jump connection: spell the jump out as a ProxyCommand
  const jump = `ssh ${opts} -W %h:%p -p ${fleet.bastion.port} ${fleet.bastion.user}@${fleet.bastion.host}`;
  return sh(`ssh ${opts} -o ProxyCommand=${q(jump)} ${target} ${q(cmd)}`);
}

beforeAll(async () => {
  fleet = await loadFleet({ hosts: 3 });
  knownHostsFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'bg-fleet-kh-')), 'known_hosts');
  fs.writeFileSync(
    knownHostsFile,
    [fleet.bastion.knownHosts, ...fleet.hosts.map((h) => h.knownHosts)].join('\n') + '\n'
  );
}, 300000);

afterAll(async () => {
  if (fleet) await cleanupFleetApp(APP);
});

describe('fleet sandbox', () => {
  test('fleet.json describes at least 3 hosts behind the bastion', () => {
    expect(fleet.hosts.length).toBeGreaterThanOrEqual(3);
    expect(fleet.bastion).toMatchObject({ host: '10.203.0.2', port: 22, user: 'ec2-user' });
    expect(fleet.bastion.knownHosts).toMatch(/^10\.203\.0\.2 ssh-ed25519 AAAA\S+$/);
    expect(fleet.registry).toBe('10.204.0.1:5000');
    fleet.hosts.forEach((h, k) => {
      expect(h).toMatchObject({
        name: `bgf-h${k + 1}`,
        host: `10.204.0.${11 + k}`,
        port: 22,
        user: 'ec2-user',
        httpUrl: `http://10.203.0.2:${8001 + k}`
      });
      expect(h.knownHosts).toMatch(new RegExp(`^10\\.204\\.0\\.${11 + k} ssh-ed25519 AAAA\\S+$`));
    });
    expect(new Set(fleet.hosts.map((h) => h.knownHosts.split(' ')[2])).size).toBe(fleet.hosts.length);
  });

  test('the runner cannot reach the hosts directly: connecting fails at once', async () => {
    const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      const s = net.connect({ host: fleet.hosts[0].host, port: 22, timeout: 5000 });
      s.on('connect', () => {
        s.destroy();
        resolve(undefined);
      });
      s.on('timeout', () => {
        s.destroy();
        resolve(Object.assign(new Error('timeout'), { code: 'TIMEOUT' }));
      });
      s.on('error', resolve);
    });
    // refused by the route at once (not a timeout): the runner has no path at all
    expect(err?.code).toMatch(/^(EHOSTUNREACH|ENETUNREACH)$/);
    // the root ns has no usable route to the hosts' subnet
    const route = await sh('ip route get 10.204.0.11');
    expect(route.code).not.toBe(0);
    expect(route.stderr).toMatch(/unreachable|No route to host/i);
  });

  test('ssh -J through the bastion reaches every host with strict host key checking, as ec2-user with docker and sudo nginx', async () => {
    for (const h of fleet.hosts.slice(0, 3)) {
      const r = await sshJ(
        `${h.user}@${h.host}`,
        'hostname; id -un; ip -4 -o addr show eth0 | awk "{print \\$4}"; docker ps >/dev/null && echo docker-ok; sudo -n /usr/sbin/nginx -t -q && echo nginx-t-ok; test -w /etc/nginx/bluegreen && echo dir-writable'
      );
      expect({ host: h.name, stderr: r.stderr, code: r.code }).toEqual({ host: h.name, stderr: '', code: 0 });
      expect(r.stdout.split('\n')).toEqual([
        h.name,
        'ec2-user',
        `${h.host}/24`,
        'docker-ok',
        'nginx-t-ok',
        'dir-writable',
        ''
      ]);
    }
    // a wrong host key is refused: h1's line does not verify h2
    fs.writeFileSync(
      knownHostsFile,
      `${fleet.bastion.knownHosts}\n${fleet.hosts[0].knownHosts.replace(fleet.hosts[0].host, fleet.hosts[1].host)}\n`
    );
    try {
      const bad = await sshJ(`ec2-user@${fleet.hosts[1].host}`, 'true');
      expect(bad.code).not.toBe(0);
      expect(bad.stderr).toMatch(/host key|Host key verification failed/i);
    } finally {
      fs.writeFileSync(
        knownHostsFile,
        [fleet.bastion.knownHosts, ...fleet.hosts.map((h) => h.knownHosts)].join('\n') + '\n'
      );
    }
  });

  test('each host has its own dockerd, files and home: a container or file on h1 does not exist on h2', async () => {
    const [h1, h2] = fleet.hosts;
    await onHostOk(
      h1.name,
      `docker rm -f fleet-smoke-own >/dev/null 2>&1; cfg="$(mktemp -d)"; printf %s ${q(SANDBOX.registryPassword)} | docker --config "$cfg" login ${fleet.registry} -u ${SANDBOX.registryUser} --password-stdin >/dev/null && docker --config "$cfg" pull -q ${fleet.registry}/demo:v1 >/dev/null && rm -rf "$cfg" && docker create --name fleet-smoke-own --label bluegreen.app=fleet-smoke-own ${fleet.registry}/demo:v1 >/dev/null`
    );
    try {
      const onH1 = (await dockerPsOn(h1.name)).map((c) => c.name);
      expect(onH1).toContain('fleet-smoke-own');
      expect((await dockerPsOn(h2.name)).map((c) => c.name)).not.toContain('fleet-smoke-own');
      expect((await dockerPsOn(h1.name, 'fleet-smoke-own')).map((c) => c.name)).toEqual(['fleet-smoke-own']);
      // ... nor on the main sandbox's dockerd
      expect(await shOk('docker ps -a --format "{{.Names}}"')).not.toMatch(/^fleet-smoke-own$/m);
      const ids = await Promise.all(
        fleet.hosts.slice(0, 3).map((h) => onHostOk(h.name, 'docker info --format "{{.Name}}"'))
      );
      expect(ids.map((s) => s.trim())).toEqual(fleet.hosts.slice(0, 3).map((h) => h.name));
    } finally {
      await onHost(
        h1.name,
        'docker rm -f fleet-smoke-own >/dev/null 2>&1; docker rmi 10.204.0.1:5000/demo:v1 >/dev/null 2>&1; true'
      );
    }
    // per-host files: /etc/nginx/bluegreen, ~ec2-user, /run
    await onHostOk(
      h1.name,
      'echo h1 >/home/ec2-user/.fleet-smoke && echo "# h1" >/etc/nginx/bluegreen/fleet-smoke-marker.txt'
    );
    try {
      expect(
        (await onHost(h2.name, 'cat /home/ec2-user/.fleet-smoke /etc/nginx/bluegreen/fleet-smoke-marker.txt')).code
      ).not.toBe(0);
      expect(fs.existsSync('/etc/nginx/bluegreen/fleet-smoke-marker.txt')).toBe(false);
      expect(fs.existsSync('/home/ec2-user/.fleet-smoke')).toBe(false);
      const nginxPids = await Promise.all(fleet.hosts.slice(0, 3).map((h) => onHostOk(h.name, 'cat /run/nginx.pid')));
      expect(new Set([...nginxPids.map((p) => p.trim()), fs.readFileSync('/run/nginx.pid', 'utf8').trim()]).size).toBe(
        4
      );
      const owner = await onHostOk(
        h2.name,
        'stat -c %U /etc/nginx/bluegreen; stat -c "%U %a" /home/ec2-user/.ssh/authorized_keys'
      );
      expect(owner).toBe('ec2-user\nec2-user 600\n');
    } finally {
      await onHost(h1.name, 'rm -f /home/ec2-user/.fleet-smoke /etc/nginx/bluegreen/fleet-smoke-marker.txt');
    }
  });

  test('every host pulls from the bastion registry after docker login and publishes ports on 127.0.0.1', async () => {
    for (const h of fleet.hosts.slice(0, 3)) {
      const r = await sshJ(
        `ec2-user@${h.host}`,
        [
          'set -e',
          'cfg="$(mktemp -d)"',
          `printf %s ${SANDBOX.registryPassword} | docker --config "$cfg" login ${fleet.registry} -u ${SANDBOX.registryUser} --password-stdin >/dev/null 2>&1`,
          `docker --config "$cfg" pull -q ${fleet.registry}/demo:v1 >/dev/null`,
          'rm -rf "$cfg"',
          'docker rm -f fleet-smoke-pub >/dev/null 2>&1 || true',
          `docker run -d --name fleet-smoke-pub -p 127.0.0.1:18998:8080 ${fleet.registry}/demo:v1 >/dev/null`,
          'for i in $(seq 1 50); do b="$(curl -s -m 2 http://127.0.0.1:18998/ || true)"; [ "$b" = v1 ] && break; sleep 0.1; done',
          'echo "body=$b"',
          `docker rm -f fleet-smoke-pub >/dev/null; docker rmi ${fleet.registry}/demo:v1 >/dev/null`
        ].join('\n')
      );
      expect({ host: h.name, out: r.stdout, err: r.stderr, code: r.code }).toEqual({
        host: h.name,
        out: 'body=v1\n',
        err: '',
        code: 0
      });
    }
  });

  test("each host's nginx answers through its forwarder, also on a keep-alive connection, and reloads with sudo as ec2-user", async () => {
    const hosts = fleet.hosts.slice(0, 3);
    for (const h of hosts) {
      const r = await getWithHost(`${h.httpUrl}/__fleet_host`, 'bgf-fleet-host');
      expect(r).toEqual({ status: 200, body: `${h.name}\n` });
    }
    const app = await prepareFleetApp(
      APP,
      hosts.map((h) => h.name)
    );
    expect(Object.keys(app.urls).sort()).toEqual(hosts.map((h) => h.name).sort());
    // the app's site is the default server: plain requests (no Host header) get its upstream; nothing runs yet -> 502
    for (const h of hosts) expect((await getWithHost(`${h.httpUrl}/`, '10.203.0.2')).status).toBe(502);

    // keep-alive through the forwarder: many requests on one connection, across a reload done by ec2-user via ssh -J
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    const get = (url: string) =>
      new Promise<string>((resolve, reject) => {
        const req = http.get(url, { agent, headers: { host: APP } }, (res) => {
          sockets.add(req.socket);
          let body = '';
          res
            .setEncoding('utf8')
            .on('data', (d: string) => (body += d))
            .on('end', () => resolve(body))
            .on('error', reject);
        });
        req.on('error', reject);
      });
    try {
      const probe = await get(`${hosts[0].httpUrl}/__sandbox_probe`);
      for (let k = 0; k < 20; k++) expect(await get(`${hosts[0].httpUrl}/__sandbox_probe`)).toBe(probe);
      expect(sockets.size).toBe(1);
    } finally {
      agent.destroy();
    }
    const workers = (name: string) => onHostOk(name, 'pgrep -P "$(cat /run/nginx.pid)" | sort');
    const before = [
      await workers(hosts[0].name),
      await workers(hosts[1].name),
      await shOk('pgrep -P "$(cat /run/nginx.pid)" | sort')
    ];
    const reload = await sshJ(
      `ec2-user@${hosts[1].host}`,
      'sudo -n /usr/sbin/nginx -t -q && sudo -n /usr/sbin/nginx -s reload && echo reloaded'
    );
    expect(reload.stdout).toBe('reloaded\n');
    expect(reload.stderr).toMatch(/^(.*\[notice\].*signal process started\n)?$/);
    // the reload reached h2's nginx (new workers) and neither h1's nor the main sandbox's
    await waitFor(async () => (await workers(hosts[1].name)) !== before[1], { what: 'new nginx workers on h2' });
    expect(await workers(hosts[0].name)).toBe(before[0]);
    expect(await shOk('pgrep -P "$(cat /run/nginx.pid)" | sort')).toBe(before[2]);
    expect((await getWithHost(`${hosts[1].httpUrl}/__fleet_host`, 'bgf-fleet-host')).body).toBe(`${hosts[1].name}\n`);
    await cleanupFleetApp(APP);
    // the reload is asynchronous: wait until the fallback server (404 "no app on <host>") answers again
    for (const h of hosts) {
      await waitFor(async () => (await getWithHost(`${h.httpUrl}/`, '10.203.0.2')).status === 404, {
        what: `404 from ${h.name} after the cleanup`
      });
    }
  });
});
