/**
 * The two parts of ssh2 the action uses, imported by their files: ssh2's index also loads its HTTP(S) agents (http,
 * https, tls), its server and its key generator, ~15 ms of Node's start that no deploy needs. Typed by @types/ssh2.
 */
declare module 'ssh2/lib/client.js' {
  import type { Client } from 'ssh2';
  const ClientClass: typeof Client;
  export default ClientClass;
}

declare module 'ssh2/lib/protocol/keyParser.js' {
  import type { utils } from 'ssh2';
  export const parseKey: typeof utils.parseKey;
}
