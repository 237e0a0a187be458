/** The traffic router for a config (see router.ts). */
import type { DeployConfig } from '../../model/config.js';
import { AlbTraffic } from '../alb/traffic.js';
import { HaproxyRouter } from '../haproxy/router.js';
import { NginxRouter } from '../nginx/router.js';
import { PortSwapRouter } from '../port-swap/router.js';
import type { Router } from '../router.js';

export function routerFor(cfg: DeployConfig): Router {
  switch (cfg.traffic) {
    case 'nginx':
      return new NginxRouter(cfg);
    case 'port-swap':
      return new PortSwapRouter(cfg);
    case 'haproxy':
      return new HaproxyRouter(cfg);
    case 'alb':
      // A run shares one AlbTraffic between its hosts (run.ts passes each host's router); this one serves one host.
      return new AlbTraffic(cfg).routerFor(cfg.hosts[0]);
  }
}
