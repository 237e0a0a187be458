/**
 * The early TCP connection (src/transport/ssh/preconnect.ts): which inputs get one, and that the connect step's first attempt
 * takes it once, and only for the same address; real sockets to a local listener.
 */
import net from 'node:net';
import { preconnectTarget } from '../../../../src/config/inputs/preconnect-target.js';
import { dropEarlySocket, preconnect, takeEarlySocket } from '../../../../src/transport/ssh/preconnect.js';

const env = (inputs: Record<string, string>): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(inputs).map(([k, v]) => [`INPUT_${k.toUpperCase()}`, v]));

describe('preconnectTarget', () => {
  test('one address: host and port (ssh-port or the one in the entry)', () => {
    expect(preconnectTarget(env({ hosts: '10.0.1.5' }))).toEqual({ host: '10.0.1.5', port: 22 });
    expect(preconnectTarget(env({ hosts: ' ec2-user@10.0.1.5:2222 ' }))).toEqual({ host: '10.0.1.5', port: 2222 });
    expect(preconnectTarget(env({ hosts: 'app.example.com', 'ssh-port': '2200', transport: 'ssh' }))).toEqual({
      host: 'app.example.com',
      port: 2200
    });
  });

  test('none where the connect step would not go straight to one address', () => {
    const cases: Array<Record<string, string>> = [
      { hosts: '' },
      { hosts: '10.0.1.5, 10.0.1.6' },
      { hosts: 'tag:Role=backend' },
      { hosts: 'i-0abc12345def67890' },
      { hosts: '10.0.1.5', transport: 'ssm' },
      { hosts: '10.0.1.5', 'jump-host': 'bastion.example.com' },
      { hosts: '10.0.1.5', 'ssh-port': 'twenty-two' },
      { hosts: 'not a host!' }
    ];
    for (const inputs of cases) {
      expect(preconnectTarget(env(inputs))).toBeUndefined();
    }
  });
});

describe('the early socket', () => {
  let server: net.Server;
  let port: number;
  let accepted: net.Socket[];
  beforeEach(async () => {
    accepted = [];
    server = net.createServer((s) => {
      accepted.push(s);
      s.write('SSH-2.0-test\r\n');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as net.AddressInfo).port;
  });
  afterEach(async () => {
    dropEarlySocket();
    for (const s of accepted) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });

  test('is connecting once preconnect resolves, and is taken once, for its address only, with what the server sent kept', async () => {
    await preconnect(preconnectTarget(env({ hosts: `127.0.0.1:${port}` })));
    expect(takeEarlySocket('127.0.0.2', port)).toBeUndefined();
    expect(takeEarlySocket('127.0.0.1', port + 1)).toBeUndefined();
    const sock = takeEarlySocket('127.0.0.1', port);
    expect(sock).toBeInstanceOf(net.Socket);
    expect(takeEarlySocket('127.0.0.1', port)).toBeUndefined();
    // nothing was read from it before it was taken: the banner is still there for ssh2
    const first = await new Promise<string>((r) => sock!.once('data', (d: Buffer) => r(d.toString())));
    expect(first).toBe('SSH-2.0-test\r\n');
    expect(accepted).toHaveLength(1);
    sock!.destroy();
  });

  test('one that failed is not handed out: the connect step opens its own', async () => {
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const deadPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    await preconnect(preconnectTarget(env({ hosts: `127.0.0.1:${deadPort}` })));
    // a second attempt, started after the early one, has failed too: the early one's ECONNREFUSED has arrived
    await new Promise<void>((r) => net.connect(deadPort, '127.0.0.1').on('error', () => r()));
    expect(takeEarlySocket('127.0.0.1', deadPort)).toBeUndefined();
  });
});
