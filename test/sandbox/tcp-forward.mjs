// Tiny TCP forwarder (a stand-in for a load balancer in front of a fleet host), used by test/sandbox/fleet-up.sh:
//   node tcp-forward.mjs <listenHost:listenPort> <targetHost:targetPort> [pidfile]
// Every accepted connection gets its own upstream connection; bytes are piped both ways unchanged, so HTTP
// keep-alive works end to end. Half-closes are passed on; an error on either side resets the other side.
// The pid file is written once the listener is up (readiness signal).
import fs from 'node:fs';
import net from 'node:net';

const [listen, target, pidfile] = process.argv.slice(2);
const split = (s) => {
  const m = /^(.+):(\d+)$/.exec(s ?? '');
  if (!m) {
    console.error(
      `usage: node tcp-forward.mjs <listenHost:port> <targetHost:port> [pidfile] (got ${JSON.stringify(s)})`
    );
    process.exit(2);
  }
  return { host: m[1], port: Number(m[2]) };
};
const from = split(listen);
const to = split(target);

const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (client) => {
  const upstream = net.connect({ host: to.host, port: to.port, allowHalfOpen: true, noDelay: true });
  client.pipe(upstream);
  upstream.pipe(client);
  // once one side is gone, finish the other one gracefully (end() flushes what is still buffered);
  // a connection idle for 10 minutes is dropped so nothing leaks
  client.on('close', () => upstream.end());
  upstream.on('close', () => client.end());
  for (const s of [client, upstream]) s.setTimeout(600_000, () => s.destroy());
  // a reset on one side is passed on as a reset (as a TCP load balancer does), not as a clean close
  client.on('error', () => (upstream.destroyed ? undefined : upstream.resetAndDestroy()));
  upstream.on('error', (e) => {
    if (e.code !== 'ECONNRESET')
      console.error(`${new Date().toISOString()} upstream ${target}: ${e.code ?? e.message}`);
    if (!client.destroyed) client.resetAndDestroy();
  });
});
server.on('error', (e) => {
  console.error(`${new Date().toISOString()} listen ${listen}: ${e.message}`);
  process.exit(1);
});
server.listen({ host: from.host, port: from.port, backlog: 1024 }, () => {
  if (pidfile) fs.writeFileSync(pidfile, `${process.pid}\n`);
  console.error(`${new Date().toISOString()} forwarding ${listen} -> ${target} (pid ${process.pid})`);
});
const stop = () => {
  server.close();
  if (pidfile) fs.rmSync(pidfile, { force: true });
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
