// A tiny HTTP app the ALB stand-in's own tests run on fleet hosts as targets (node alb-test-target.mjs NAME PORT):
//   GET /health          -> the current health code (200 at start)
//   GET /set-health?code -> changes it (so a test can make a target fail its health checks)
//   GET /slow?ms=N       -> answers after N ms (an in-flight request across a deregistration)
//   anything else        -> 200 "NAME"
import http from 'node:http';

const [name, port] = process.argv.slice(2);
let health = 200;
http
  .createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const reply = (code, body) => {
      res.writeHead(code, { 'content-type': 'text/plain', 'x-target-name': name });
      res.end(body);
    };
    if (url.pathname === '/health') return reply(health, `${name} health ${health}\n`);
    if (url.pathname === '/set-health') {
      health = Number(url.searchParams.get('code') ?? 200);
      return reply(200, `${name} health now ${health}\n`);
    }
    if (url.pathname === '/slow')
      return void setTimeout(() => reply(200, name), Number(url.searchParams.get('ms') ?? 1000));
    reply(200, name);
  })
  .listen(Number(port), '0.0.0.0', () => console.log(`${name} listening on ${port}`));
